"""A host for `setup` tests: the machine's postfix (main.cf saved and restored), a
contract frontend, a root-owned configuration; everything setup makes is removed after."""

from __future__ import annotations

import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from email.utils import make_msgid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from support.accounts import remove_students
from support.cli import REPO, WOD
from support.frontend import FrontendServer
from wod_backend.intake.policy import sign
from wod_backend.order import Action, Order

USER, LOW, HIGH, UID_BASE = "wodsetup", 9601, 9604, 40000
DOMAIN = "wod-setup.example.test"  # the location's FQDN (mail.domains)
MAIN_CF = Path("/etc/postfix/main.cf")
MASTER_CF = Path("/etc/postfix/master.cf")


@contextmanager
def postfix_restored(users: tuple[str, ...]) -> Iterator[None]:
    """main.cf and master.cf as they were, and no map file or nft table of these
    backend users left behind, whatever the test did."""
    saved = {path: path.read_bytes() for path in (MAIN_CF, MASTER_CF)}
    try:
        yield
    finally:
        subprocess.run(["postsuper", "-d", "ALL"], capture_output=True)
        subprocess.run(["postfix", "stop"], capture_output=True)
        for path, data in saved.items():
            path.write_bytes(data)
        for user in users:
            for kind in ("clients", "recipients"):
                Path(f"/etc/postfix/wod-backend-{kind}-{user}").unlink(missing_ok=True)
            subprocess.run(["nft", "delete", "table", "inet", f"wod_backend_{user}"],
                           capture_output=True)


def wod(cfg: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([WOD, "--config", str(cfg), *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def config_text(root: Path, fe: FrontendServer, concurrency: int = 20, extra: str = "",
                listen_port: Optional[int] = None, relays: tuple[str, ...] = ("127.0.0.2",),
                signed: bool = True, content: Optional[Path] = None,
                limits: str = "") -> str:
    etc = root / "etc"
    port = f", listen_port: {listen_port}" if listen_port else ""
    secret = f", secret_file: {etc}/intake.secret" if signed else ""
    return f"""
students: {{min: {LOW}, max: {HIGH}, uid_base: {UID_BASE}, home_root: {root}/homes,
           base_id: 0, kill_grace_seconds: 1{", limits: " + limits if limits else ""}}}
content: {{public: {content or f"{REPO}/workshops-public"}}}
hooks: {{public: {REPO}, timeout: 120}}
state_dir: {root}/state
backups: {{dir: {root}/backups}}
frontend: {{url: '{fe.url}', username: moderator, password_file: {etc}/fe.pass}}
mail: {{backend_user: {USER}, backend_address: {USER}@localhost, listen: loopback-only,
       concurrency: {concurrency}, domains: [{DOMAIN}]{port}}}
intake: {{allowed_relays: [{", ".join(relays)}]{secret}}}
setup: {{sudoers_file: /etc/sudoers.d/wod-backend-setup-test,
        cron_file: /etc/cron.d/wod-backend-setup-test, backend_home: {root}/backend-home,
        logrotate_dir: {root}/logrotate.d, firewall_dir: {root}/nftables.d}}
variables: {{BRANDING: Setup, SURVEYURL: 'https://s.example', BACKEND_HOST: localhost}}
appliances: {{WKSHP-Ansible101: {{host: 127.0.0.1, manage: false}}}}
{extra}"""


@contextmanager
def setup_host(extra: str = "", **options: Any) -> Iterator[tuple[Path, Path, FrontendServer]]:
    """`options` go to config_text (listen_port, relays, signed, limits); `content` may be
    a function that writes a content root under the site's root and returns it."""
    root = Path(tempfile.mkdtemp(prefix="wod-setup-", dir="/var/tmp"))
    root.chmod(0o755)
    restored = postfix_restored((USER,))
    restored.__enter__()
    subprocess.run(["userdel", "-r", USER], capture_output=True)
    fe = FrontendServer().start()
    fe.add_students(range(LOW, HIGH + 1))
    fe.add_customer(4711)
    fe.add_workshop(1, "WKSHP-API101")
    fe.add_location(DOMAIN)
    etc = root / "etc"
    etc.mkdir(mode=0o755)
    (etc / "fe.pass").write_text("mod-Secret1\n")
    (etc / "fe.pass").chmod(0o600)
    cfg = etc / "config.yml"
    if callable(options.get("content")):
        options["content"] = options["content"](root)
    cfg.write_text(config_text(root, fe, extra=extra.format(root=root), **options))
    cfg.chmod(0o644)
    subprocess.run(["postconf", "-e", f"maillog_file={root}/maillog", "inet_protocols=ipv4",
                    "queue_run_delay=1s", "minimal_backoff_time=1s",
                    "maximal_backoff_time=2s"], check=True)
    try:
        yield root, cfg, fe
    finally:
        fe.stop()
        for service in ("hub", "privd"):
            subprocess.run([WOD, "--config", str(cfg), service, "stop"], capture_output=True)
        remove_students(cfg, LOW, HIGH)
        restored.__exit__(None, None, None)
        for path in ("/etc/sudoers.d/wod-backend-setup-test",
                     "/etc/cron.d/wod-backend-setup-test"):
            Path(path).unlink(missing_ok=True)
        subprocess.run(["pkill", "-KILL", "-u", USER], capture_output=True)
        subprocess.run(["userdel", "-r", USER], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def send(source: str, secret: str, n: int, customer: str = "4711") -> None:
    order = Order(Action.CREATE, (n,), customer, "WKSHP-API101")
    msg = (f"From: api@frontend\nTo: {USER}@localhost\nMessage-ID: {make_msgid('setup')}\n"
           f"X-WoD-Signature: {sign(secret, order)}\nSubject: CREATE {n} {customer}\n\n"
           f"WKSHP-API101\n")
    with smtplib.SMTP("127.0.0.1", 25, timeout=30, source_address=(source, 0)) as smtp:
        smtp.sendmail("api@frontend", [f"{USER}@localhost"], msg.encode())


def wait_for(what: str, predicate: Callable[[], object], root: Path,
             timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            log = (root / "maillog").read_text(errors="replace")[-3000:] \
                if (root / "maillog").exists() else ""
            raise AssertionError(f"timed out waiting for {what}\n{log}")
        time.sleep(0.3)


def frontend_send(port: int, rcpt: str, subject: str, body: str,
                  source: str = "127.0.0.1", sender: str = "wod-noreply@frontend") -> list[str]:
    """An order as the WoD frontend (api-db) sends it: raw SMTP written in one go, LF line
    ends, no blank line between the Subject header and the body, no QUIT. Returns the
    server's replies (the last one says whether the mail was queued)."""
    msg = (f"HELO api-db.example.test\nMAIL FROM: {sender}\nRCPT TO: {rcpt}\nDATA\n"
           f"Subject: {subject}\n{body}\n.\n")
    replies: list[str] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30,
                                  source_address=(source, 0)) as conn:
        conn.sendall(msg.encode())
        buffer = b""
        while len(replies) < 6:
            chunk = conn.recv(4096)
            if not chunk:
                break
            buffer += chunk
            *lines, rest = buffer.split(b"\r\n")
            buffer = rest
            replies += [ln.decode() for ln in lines if ln[3:4] != b"-"]
    return replies
