"""A whole backend on the real mail path, for the end-to-end tests and the benchmarks.

postfix on loopback delivers to an unprivileged backend user whose procmail (from
procmailrc.example) runs `wod-backend mail`; root steps go through the sudo helper
(scripts/sudoers.example); real Linux students, a real JupyterHub, and the frontend
played by the contract server. Everything is removed on exit, even after a failure.
"""

from __future__ import annotations

import compileall
import json
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from email.utils import make_msgid
from pathlib import Path
from typing import Iterator

from support import jupyterhub
from support.accounts import install_sudo_rule, remove_students, state_dir
from support.cli import REPO, invoke
from support.frontend import FrontendServer
from support.postfix import Postfix

LOW, HIGH, UID_BASE = 9101, 9140, 40000
BACKEND_USER = "wodbe2e"
BIN = Path(sys.executable).parent


class Backend:
    def __init__(self, root: Path, fe: FrontendServer, hub, postfix: Postfix, cfg: Path):
        self.root, self.fe, self.hub, self.postfix, self.config = root, fe, hub, postfix, cfg
        self.homes = root / "homes"

    def frontend_send(self, subject: str, body: str) -> bytes:
        """The production frontend's exact way: the whole SMTP dialogue at once, before
        the greeting, bare LF, no blank line before the body, no QUIT; it hangs up at
        the first reply."""
        dialogue = (f"HELO api-db\nMAIL FROM:<wod-api@localhost>\n"
                    f"RCPT TO:<{BACKEND_USER}@localhost>\nDATA\n"
                    f"Subject: {subject}\n{body}\n.\n").encode()
        with socket.create_connection(("127.0.0.1", 25), timeout=10) as s:
            s.sendall(dialogue)
            return s.recv(1024)

    def smtp_send(self, subject: str, body: str, message_id: str | None = None) -> None:
        msg = (f"From: admin@localhost\nTo: {BACKEND_USER}@localhost\n"
               f"Message-ID: {message_id or make_msgid('e2e')}\nSubject: {subject}\n\n"
               f"{body}\n")
        with smtplib.SMTP("127.0.0.1", 25, timeout=30) as smtp:
            smtp.sendmail("admin@localhost", [f"{BACKEND_USER}@localhost"], msg.encode())

    def send_at_once(self, orders: list[tuple[str, str]]) -> None:
        """(subject, body) mails sent in parallel, one SMTP connection each."""
        threads = [threading.Thread(target=self.smtp_send, args=order) for order in orders]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def history(self) -> list[dict]:
        return json.loads(invoke(["--config", str(self.config), "history", "--limit",
                                  "500", "--json"]).out)

    def wait(self, what: str, predicate, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        procmail_log = (self.root / "wodbe" / "procmail.log")
        raise AssertionError(
            f"timed out waiting for {what}\n--- maillog\n{self.postfix.log()[-3000:]}\n"
            f"--- procmail.log\n{procmail_log.read_bytes()[-2000:] if procmail_log.exists() else ''}"
            f"\n--- journal\n{json.dumps(self.history()[:5], indent=1)[-4000:]}")

    def student(self, n: int) -> dict:
        return self.fe.state.students[n]


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@contextmanager
def mail_backend(low: int = LOW, high: int = HIGH, real_singleuser: bool = True,
                 ldap_uri: str | None = None, extra: str = "",
                 content: Path | None = None,
                 variables: dict | None = None) -> Iterator[Backend]:
    """`extra`: more configuration (YAML lines) for the benchmarks' larger runs;
    `content`: another public content root (the benchmark beside the original uses
    a checkout of wod-notebooks), `variables` the workshops' variables then."""
    root = Path(tempfile.mkdtemp(prefix="wod-e2e-", dir="/var/tmp"))
    root.chmod(0o755)
    sudoers = Path("/etc/sudoers.d/wod-backend-e2e")
    fe = hub = postfix = None
    try:
        # What the backend user runs: a copy of the package, content and hooks it can read.
        shutil.copytree(REPO / "wod_backend", root / "lib" / "wod_backend",
                        ignore=shutil.ignore_patterns("__pycache__"))
        # Byte-compiled as pip compiles an installed package: the backend user cannot
        # write __pycache__ in this root-owned copy, and would compile every module
        # of every mail again.
        compileall.compile_dir(root / "lib" / "wod_backend", quiet=1)
        shutil.copytree(content or REPO / "workshops-public", root / "content",
                        ignore=shutil.ignore_patterns(".git"))
        for sub in ("scripts", "playbooks"):
            shutil.copytree(REPO / sub, root / "hooks" / sub)
        (root / "homes").mkdir(mode=0o755)
        _run("useradd", "-m", "-d", str(root / "wodbe"), "-s", "/bin/sh", BACKEND_USER)
        be = pwd.getpwnam(BACKEND_USER)
        state = state_dir(root, BACKEND_USER)
        secrets_dir = root / "secrets"
        secrets_dir.mkdir(mode=0o755)

        fe = FrontendServer().start()
        fe.add_students(range(low, high + 1))
        for cid in range(4711, 4720):
            fe.add_customer(cid)
        fe.add_workshop(1, "WKSHP-API101")
        fe.add_workshop(2, "WKSHP-Ansible101", reset=True, monoappliance=True, capacity=0)
        fe.add_workshop(3, "WKSHP-Python101")
        hub = jupyterhub.start(root / "hub", real_singleuser=real_singleuser)
        for name, text in (("fe.pass", "mod-Secret1"), ("hub.token", hub.token)):
            path = secrets_dir / name
            path.write_text(text + "\n")
            path.chmod(0o600)
            os.chown(path, be.pw_uid, be.pw_gid)

        cfg = root / "config.yml"
        cfg.write_text(f"""
students: {{min: {low}, max: {high}, uid_base: {UID_BASE}, home_root: {root}/homes,
           kill_grace_seconds: 1}}
content: {{public: {root}/content}}
hooks: {{public: {root}/hooks, timeout: 120}}
ansible: {{python: {sys.executable}}}
state_dir: {state}
backups: {{dir: {root}/backups}}
frontend: {{url: '{fe.url}', username: moderator, password_file: {secrets_dir}/fe.pass,
           timeout: 10}}
jupyterhub: {{url: '{hub.url}', token_file: {secrets_dir}/hub.token, timeout: 60}}
mail: {{backend_user: {BACKEND_USER}, backend_address: {BACKEND_USER}@localhost}}
orders: {{cleanup_wait: 2}}
privileged: {{mode: sudo}}
variables: {json.dumps(variables or {"BRANDING": "E2E", "SURVEYURL": "https://survey.example",
                                   "BACKEND_HOST": "localhost"})}
appliances: {{WKSHP-Ansible101: {{host: 127.0.0.1, manage: false}}}}
{extra}""")
        cfg.chmod(0o644)
        # The shipped sudoers rule and procmail recipe, with only their paths changed.
        install_sudo_rule(sudoers, cfg, BACKEND_USER)
        rc = (REPO / "procmailrc.example").read_text()
        rc = rc.replace("WOD_BACKEND=/opt/wod-backend/venv/bin/wod-backend",
                        f"WOD_BACKEND={BIN}/wod-backend\nPYTHONPATH={root}/lib")
        rc = rc.replace("WOD_CONFIG=/etc/wod-backend/config.yml", f"WOD_CONFIG={cfg}")
        rcfile = root / "wodbe" / ".procmailrc"
        rcfile.write_text(rc)
        os.chown(rcfile, be.pw_uid, be.pw_gid)
        rcfile.chmod(0o644)
        r = invoke(["--config", str(cfg), "students", "ensure"])
        if r.code != 0:
            raise RuntimeError(f"students ensure failed: {r.err}{r.out}")
        postfix = Postfix(root / "postfix").start()
        yield Backend(root, fe, hub, postfix, cfg)
    finally:
        if postfix:
            postfix.stop()
        if hub:
            hub.stop()
        if fe:
            fe.stop()
        sudoers.unlink(missing_ok=True)
        cfgfile = root / "config.yml"
        remove_students(cfgfile, low, high)
        subprocess.run(["pkill", "-u", BACKEND_USER], capture_output=True)
        subprocess.run(["userdel", BACKEND_USER], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
