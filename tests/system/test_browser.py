"""A participant in a real browser, on a host made by `setup` alone with the managed hub
over TLS: the frontend's CREATE through the location's port and name, a login at
/hub/login with the password the frontend received, a bash notebook and a python
notebook (kernelspecs exactly as published) each running their first cell, the kernel
inside the student's own cgroup, and the old password refused after the CLEANUP."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from support.browser import Student, browser
from support.content import browser_workshop
from support.setuphost import DOMAIN, LOW, UID_BASE, USER, frontend_send, setup_host, wait_for, wod
from support.slapd import free_port

PORT = 10025


def certificate(root: Path) -> tuple[Path, Path]:
    cert, key = root / "tls" / "cert.pem", root / "tls" / "key.pem"
    cert.parent.mkdir(mode=0o700)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def kernel_cgroups(uid: int) -> list[str]:
    """/proc/PID/cgroup of the student's bash kernel (bash_kernel runs as the student)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        uid_line = re.search(r"^Uid:\s+(\d+)", status, re.M)
        if b"bash_kernel" in cmd and uid_line and int(uid_line.group(1)) == uid \
                and "\nState:\tZ" not in status:
            return Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    raise AssertionError(f"no bash kernel of uid {uid} running")


def test_a_participant_runs_the_notebooks_in_a_browser():
    port = free_port()
    hub_url = f"https://127.0.0.1:{port}"
    extra = ("jupyterhub: {{url: '" + hub_url + "', token_file: {root}/etc/hub.token, "
             "manage: true, venv: {root}/hub-venv, data_dir: {root}/hub-data, timeout: 30, "
             "hub_port: " + str(free_port()) + ", proxy_api_port: " + str(free_port()) +
             ", tls_cert: {root}/tls/cert.pem, tls_key: {root}/tls/key.pem}}\n")
    with setup_host(extra, listen_port=PORT, relays=("127.0.0.1",), signed=False,
                    limits="{tasks: 400}", content=browser_workshop) as (root, cfg, fe):
        certificate(root)
        fe.add_workshop(2, "WKSHP-Browser101")
        fe.state.locations.clear()  # the site's row, for this hub
        fe.add_location(DOMAIN, proto="https", port=str(port))
        p = wod(cfg, "setup", "--yes", timeout=1800)
        assert p.returncode == 0, p.stdout[-4000:] + p.stderr
        assert "[ok  ] kernels: the hub serves bash, python3, ssh" in p.stdout, p.stdout
        assert "[ok  ] location: row" in p.stdout, p.stdout

        student = f"student{LOW}"
        replies = frontend_send(PORT, f"{USER}@{DOMAIN}", f"CREATE {LOW} 4711 ada@example.org",
                                "WKSHP-Browser101")
        assert replies[-1].startswith("250"), replies
        wait_for("the password at the frontend",
                 lambda: fe.state.students[LOW]["password"], root)
        password = fe.state.students[LOW]["password"]

        with browser() as driver:
            s = Student(driver, hub_url, student)
            assert s.login(password) == ""
            # The hub opens the workshop's first notebook (its bash kernel) by itself.
            try:
                s.wait("0-ReadMeFirst opened",
                       lambda d: "0-ReadMeFirst.ipynb" in d.current_url, 180)
            except AssertionError as exc:  # once seen: a bare 404 at /user/studentN/
                log = root / "hub-data" / "jupyterhub.log"
                tail = log.read_text(errors="replace")[-6000:] if log.exists() else ""
                raise AssertionError(f"{exc}\n--- the hub's log\n{tail}") from None
            out = s.run_first_code_cell("bash says")
            assert out.strip() == f"bash says {student} in WKSHP-Browser101"
            assert s.dialogs() == []  # no "Select Kernel", no news prompt
            cgroups = kernel_cgroups(UID_BASE + LOW)
            assert f"pids:/wod-backend/{UID_BASE + LOW}" in "\n".join(
                line.split(":", 1)[1] for line in cgroups), cgroups
            s.open_notebook("WKSHP-Browser101/1-Python.ipynb")
            out = s.run_first_code_cell("python says")
            assert out.strip() == f"python says {UID_BASE + LOW}"
            # Logging out stops the server (shutdown_on_logout): an assigned student's
            # stopped server is idle, not a fault, and nothing starts it again.
            driver.get(f"{hub_url}/hub/logout")
            wait_for("the server stopped by the logout", lambda: "idle (stopped)" in wod(
                cfg, "status", str(LOW)).stdout, root, 60)
            p = wod(cfg, "reconcile", str(LOW))
            assert p.returncode == 0, p.stdout + p.stderr

        replies = frontend_send(PORT, f"{USER}@{DOMAIN}", f"CLEANUP {LOW} 4711",
                                "WKSHP-Browser101")
        assert replies[-1].startswith("250"), replies
        wait_for("the new password after the CLEANUP",
                 lambda: fe.state.students[LOW]["password"] not in ("", password), root)
        with browser() as driver:
            refused = Student(driver, hub_url, student).login(password)
            assert "Invalid username or password" in refused
