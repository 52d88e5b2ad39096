"""Issue 24: `first_cell`, from the frontend's CREATE mail to the first cell of a bash
notebook answering in the participant's browser, on a host made by `setup` alone with
the managed hub (the frontend's port and the location's name, real PAM login, a real
jupyterhub-singleuser and bash kernel, headless chromium). Each run uses a fresh seat
(a CLEANUP in between, not timed)."""

from __future__ import annotations

import time

from benchmarks.harness import Report, Row
from support.browser import Student, browser
from support.content import browser_workshop
from support.setuphost import (DOMAIN, HIGH, LOW, USER, frontend_send, setup_host,
                               wait_for, wod)
from support.slapd import free_port

PORT = 10025


def first_cell(report: Report, times: int) -> None:
    report.header("issue 24: a participant's first cell, from the order mail")
    port = free_port()
    hub_url = f"http://127.0.0.1:{port}"
    extra = ("jupyterhub: {{url: '" + hub_url + "', token_file: {root}/etc/hub.token, "
             "manage: true, venv: /var/tmp/wod-bench-hub-venv, data_dir: {root}/hub-data, "
             "timeout: 30, hub_port: " + str(free_port()) + ", proxy_api_port: "
             + str(free_port()) + "}}\n")
    password_s, cell_s = [], []
    with setup_host(extra, listen_port=PORT, relays=("127.0.0.1",), signed=False,
                    content=browser_workshop) as (root, cfg, fe):
        fe.add_workshop(2, "WKSHP-Browser101")
        fe.state.locations.clear()  # the site's row, for this hub
        fe.add_location(DOMAIN, port=str(port))
        setup = wod(cfg, "setup", "--yes", timeout=1800)
        if setup.returncode != 0:
            raise RuntimeError(setup.stdout[-2000:] + setup.stderr)
        for i in range(times):
            n = LOW + i % (HIGH - LOW + 1)
            fe.state.students[n]["password"] = ""
            start = time.monotonic()
            frontend_send(PORT, f"{USER}@{DOMAIN}", f"CREATE {n} 4711", "WKSHP-Browser101")
            wait_for("the password", lambda: fe.state.students[n]["password"], root, 120)
            password_s.append(time.monotonic() - start)
            with browser() as driver:
                s = Student(driver, hub_url, f"student{n}")
                s.login(fe.state.students[n]["password"])
                s.wait("0-ReadMeFirst", lambda d: "0-ReadMeFirst" in d.current_url, 180)
                s.run_first_code_cell("bash says")
            cell_s.append(time.monotonic() - start)
            old = fe.state.students[n]["password"]
            frontend_send(PORT, f"{USER}@{DOMAIN}", f"CLEANUP {n} 4711", "WKSHP-Browser101")
            wait_for("the CLEANUP", lambda: fe.state.students[n]["password"] != old, root, 120)
    report.add(Row("time_to_password (frontend's raw SMTP on 10025)", "s", password_s))
    report.add(Row("first_cell: mail in -> first bash cell answers in the browser", "s",
                   cell_s, note="login, spawn, JupyterLab load, kernel start, run"))
