"""A student in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromedriver (selenium is given its path: it cannot download a driver here).

`Student` logs in at /hub/login, opens a notebook in JupyterLab, runs its first code
cell and reads the output, as a participant does. A failing step keeps a screenshot in
FAILURES and names it in the error.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FAILURES = Path("/var/tmp/wod-browser-failures")


@contextmanager
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="wod-chromium-")
    # The fixture's certificate is its own; nothing outside this machine is reached.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--ignore-certificate-errors", "--window-size=1400,1000",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


class Student:
    def __init__(self, driver: webdriver.Chrome, hub_url: str, name: str):
        self.driver, self.hub, self.name = driver, hub_url.rstrip("/"), name

    def shot(self, what: str) -> str:
        FAILURES.mkdir(parents=True, exist_ok=True)
        path = FAILURES / f"{self.name}-{what}-{int(time.time())}.png"
        try:
            self.driver.save_screenshot(str(path))
        except WebDriverException:
            return "(no screenshot)"
        return str(path)

    def wait(self, what: str, condition, timeout: float = 120):  # type: ignore[no-untyped-def]
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.3).until(condition)
        except Exception as exc:
            raise AssertionError(f"{what}: {type(exc).__name__}; screenshot "
                                 f"{self.shot(what.replace(' ', '-'))}; page "
                                 f"{self.driver.current_url}") from None

    def login(self, password: str) -> str:
        """Log in at /hub/login; returns the text the hub shows when it refuses."""
        d = self.driver
        d.get(f"{self.hub}/hub/login")
        self.wait("the login form", EC.presence_of_element_located((By.ID, "username_input")))
        d.find_element(By.ID, "username_input").send_keys(self.name)
        d.find_element(By.ID, "password_input").send_keys(password)
        d.find_element(By.ID, "login_submit").click()
        self.wait("the login answered", lambda drv: "/hub/login" not in drv.current_url
                  or drv.find_elements(By.CSS_SELECTOR, ".login_error, .alert-danger"))
        errors = d.find_elements(By.CSS_SELECTOR, ".login_error, .alert-danger")
        return " ".join(e.text for e in errors if e.text)

    def open_notebook(self, path: str) -> None:
        """Open `path` alone (`?reset`: the workspace's other tabs closed)."""
        self.driver.get(f"{self.hub}/user/{self.name}/lab/tree/{path}?reset")
        self.wait(f"{path} open", EC.presence_of_element_located(
            (By.CSS_SELECTOR, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell")), 180)

    def run_first_code_cell(self, expected: str) -> str:
        """Put the cursor in the first code cell, Shift+Enter, wait for `expected` in its
        output; returns the output's text."""
        d = self.driver
        panel = ".jp-NotebookPanel:not(.lm-mod-hidden)"
        # A cell run before the kernel is connected is lost: wait for "<kernel> | Idle"
        # in the status bar, as a person waits for the kernel indicator.
        self.wait("the kernel idle", lambda drv: not drv.find_elements(
            By.CSS_SELECTOR, ".jp-Dialog") and any(
            "| Idle" in e.text for e in drv.find_elements(By.CSS_SELECTOR, ".jp-StatusBar-Item")),
            180)
        out = f"{panel} .jp-CodeCell .jp-OutputArea-output"

        def answered(drv):  # type: ignore[no-untyped-def]
            texts = [e.text for e in drv.find_elements(By.CSS_SELECTOR, out) if e.is_displayed()]
            return next((t for t in texts if expected in t), False)

        for attempt in (1, 2):
            editor = self.wait("a code cell on screen", lambda drv: next(
                (e for e in drv.find_elements(By.CSS_SELECTOR,
                                              f"{panel} .jp-CodeCell .cm-content")
                 if e.is_displayed()), False))
            editor.click()
            webdriver.ActionChains(d).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(
                Keys.SHIFT).perform()
            try:  # a person who sees nothing happen runs the cell again
                return str(WebDriverWait(d, 60 if attempt == 1 else 1,
                                         poll_frequency=0.3).until(answered))
            except Exception:
                continue
        return str(self.wait(f"the first cell answering {expected!r}", answered, 120))

    def dialogs(self) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog")]
