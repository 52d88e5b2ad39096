"""The machine's postfix, configured by a test for loopback delivery into procmail.

The original main.cf is saved and restored; postfix is started and stopped by the test
(there is no systemd here). Deferred mails are retried within seconds so that a 75
from wod-backend shows its retry during the test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

MAIN_CF = Path("/etc/postfix/main.cf")

SETTINGS = {
    "inet_interfaces": "loopback-only",
    "inet_protocols": "ipv4",
    "myhostname": "localhost",
    "mydomain": "localdomain",
    "mydestination": "localhost",
    "mynetworks": "127.0.0.0/8",
    "relayhost": "",
    "mailbox_command": '/usr/bin/procmail -a "$EXTENSION"',
    "local_destination_concurrency_limit": "20",
    "default_destination_concurrency_limit": "20",
    "queue_run_delay": "1s",
    "minimal_backoff_time": "1s",
    "maximal_backoff_time": "2s",
    "smtpd_banner": "$myhostname ESMTP",
}


def postconf(*args: str) -> str:
    return subprocess.run(["postconf", *args], check=True, capture_output=True,
                          text=True).stdout


def running() -> bool:
    return subprocess.run(["postfix", "status"], capture_output=True).returncode == 0


class Postfix:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.maillog = workdir / "maillog"
        self.saved = workdir / "main.cf.orig"

    def start(self) -> "Postfix":
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(MAIN_CF, self.saved)
        settings = {**SETTINGS, "maillog_file": str(self.maillog)}
        postconf("-e", *(f"{k}={v}" for k, v in settings.items()))
        # Mails another run left in the queue must not reach this run's backend.
        subprocess.run(["postsuper", "-d", "ALL"], capture_output=True)
        subprocess.run(["newaliases"], capture_output=True)
        if running():
            subprocess.run(["postfix", "reload"], check=True, capture_output=True)
        else:
            subprocess.run(["postfix", "start"], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", 25), timeout=2) as s:
                    if s.recv(100).startswith(b"220"):
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not start: {self.log()[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run(["postsuper", "-d", "ALL"], capture_output=True)
        subprocess.run(["postfix", "stop"], capture_output=True)
        if self.saved.exists():
            shutil.copy2(self.saved, MAIN_CF)

    def log(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return ""

    def queue_empty(self) -> bool:
        out = subprocess.run(["postqueue", "-j"], capture_output=True, text=True).stdout
        return not out.strip()

    def flush(self) -> None:
        subprocess.run(["postqueue", "-f"], capture_output=True)
