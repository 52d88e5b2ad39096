"""`jupyterhub.manage: true`: setup installs, configures and runs the hub (root, real
postfix, PAM, a real jupyterhub-singleuser per student)."""

from __future__ import annotations

import os
import pwd
import shutil

import pytest
import requests

from support.setuphost import DOMAIN, LOW, USER, send, setup_host, wait_for, wod
from support.slapd import free_port

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("postfix") is None, reason="needs postfix"),
              pytest.mark.skipif(shutil.which("configurable-http-proxy") is None,
                                 reason="needs configurable-http-proxy (npm)")]

# Formatted twice: with the port here, with the site's root by setup_host.
HUB = """jupyterhub: {{{{url: 'http://127.0.0.1:{port}', token_file: {{root}}/etc/hub.token,
             manage: true, venv: {{root}}/hub-venv, data_dir: {{root}}/hub-data,
             timeout: 30, slow_spawn_timeout: 1}}}}
"""


def singleuser_uids(user: str) -> set[int]:
    """The uids of the processes running this user's jupyterhub-singleuser."""
    uids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        if any(b"jupyterhub-singleuser" in part for part in cmd) and "\nState:\tZ" not in status:
            env = open(f"/proc/{pid}/environ", "rb").read()
            if f"JUPYTERHUB_USER={user}".encode() in env:
                uids.add(int(status.split("\nUid:\t")[1].split()[0]))
    return uids


def test_setup_runs_a_hub_students_log_in_to(tmp_path):
    port = free_port()
    with setup_host(HUB.format(port=port)) as (root, cfg, fe):
        fe.state.locations.clear()  # the frontend's row for this hub
        fe.add_location(DOMAIN, port=str(port))
        p = wod(cfg, "setup", "--yes", timeout=1800)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr
        assert "[ok  ] managed hub: running, token limited to students" in p.stdout
        hub_url = f"http://127.0.0.1:{port}"
        token = (root / "etc" / "hub.token").read_text().strip()
        assert os.stat(root / "etc" / "hub.token").st_uid == pwd.getpwnam(USER).pw_uid

        secret = (root / "etc" / "intake.secret").read_text().strip()
        send("127.0.0.2", secret, LOW)
        wait_for("the password at the frontend", lambda: fe.state.students[LOW]["password"],
                 root)
        password = fe.state.students[LOW]["password"]
        student = f"student{LOW}"

        def ready() -> bool:
            r = requests.get(f"{hub_url}/hub/api/users/{student}", timeout=10,
                             headers={"Authorization": f"token {token}"})
            return r.status_code == 200 and bool(
                (r.json().get("servers") or {}).get("", {}).get("ready"))
        wait_for("the student's server ready", ready, root, timeout=180)
        assert singleuser_uids(student) == {pwd.getpwnam(student).pw_uid}

        web = requests.Session()
        web.get(f"{hub_url}/hub/login", timeout=10)
        login = web.post(f"{hub_url}/hub/login", timeout=30, allow_redirects=False,
                         data={"username": student, "password": password,
                               "_xsrf": web.cookies.get("_xsrf", "")})
        assert login.status_code == 302 and "/hub/login" not in login.headers["Location"]
        home = web.get(f"{hub_url}/hub/api/user", timeout=10,
                       headers={"X-XSRFToken": web.cookies.get("_xsrf", "")})
        assert home.status_code == 200 and home.json()["name"] == student
        bad = requests.Session()
        bad.get(f"{hub_url}/hub/login", timeout=10)
        refused = bad.post(f"{hub_url}/hub/login", timeout=30, allow_redirects=False,
                           data={"username": student, "password": "not-the-password",
                                 "_xsrf": bad.cookies.get("_xsrf", "")})
        assert refused.status_code == 403

        intruder = requests.post(f"{hub_url}/hub/api/users/intruder", timeout=10,
                                 json={"admin": True},
                                 headers={"Authorization": f"token {token}"})
        assert intruder.status_code == 403  # outside the backend's scopes

        p = wod(cfg, "setup", "--check")
        assert (p.returncode, p.stdout.strip()) == (
            0, "host matches the configuration: nothing to do"), p.stdout + p.stderr
