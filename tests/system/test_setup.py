"""`wod-backend setup` from a host without the backend user, its postfix settings, sudo
rule or state dir, then orders by SMTP as the frontend sends them (root, real postfix).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import smtplib
import stat
import subprocess
import tempfile
import time
from email.utils import make_msgid
from pathlib import Path

import pytest

from support.accounts import password_works, remove_students
from support.cli import REPO, WOD
from support.frontend import FrontendServer
from wod_backend.intake.policy import sign
from wod_backend.order import Action, Order

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("postfix") is None, reason="needs postfix")]

USER, LOW, HIGH, UID_BASE = "wodsetup", 9601, 9604, 40000
MAIN_CF = Path("/etc/postfix/main.cf")


def wod(cfg: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([WOD, "--config", str(cfg), *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def config_text(root: Path, fe: FrontendServer, concurrency: int = 20) -> str:
    etc = root / "etc"
    return f"""
students: {{min: {LOW}, max: {HIGH}, uid_base: {UID_BASE}, home_root: {root}/homes,
           base_id: 0, kill_grace_seconds: 1}}
content: {{public: {REPO}/workshops-public}}
hooks: {{public: {REPO}, timeout: 120}}
state_dir: {root}/state
frontend: {{url: '{fe.url}', username: moderator, password_file: {etc}/fe.pass}}
mail: {{backend_user: {USER}, backend_address: {USER}@localhost, listen: loopback-only,
       concurrency: {concurrency}}}
intake: {{allowed_relays: [127.0.0.2], secret_file: {etc}/intake.secret}}
setup: {{sudoers_file: /etc/sudoers.d/wod-backend-setup-test,
        cron_file: /etc/cron.d/wod-backend-setup-test, backend_home: {root}/backend-home}}
variables: {{BRANDING: Setup, SURVEYURL: 'https://s.example', BACKEND_HOST: localhost}}
appliances: {{WKSHP-Ansible101: 127.0.0.1}}
"""


@pytest.fixture
def host():
    root = Path(tempfile.mkdtemp(prefix="wod-setup-", dir="/var/tmp"))
    root.chmod(0o755)
    saved = root / "main.cf.orig"
    shutil.copy2(MAIN_CF, saved)
    subprocess.run(["userdel", "-r", USER], capture_output=True)
    fe = FrontendServer().start()
    fe.add_students(range(LOW, HIGH + 1))
    fe.add_customer(4711)
    fe.add_workshop(1, "WKSHP-API101")
    etc = root / "etc"
    etc.mkdir(mode=0o755)
    (etc / "fe.pass").write_text("mod-Secret1\n")
    (etc / "fe.pass").chmod(0o600)
    cfg = etc / "config.yml"
    cfg.write_text(config_text(root, fe))
    cfg.chmod(0o644)
    subprocess.run(["postconf", "-e", f"maillog_file={root}/maillog", "inet_protocols=ipv4",
                    "queue_run_delay=1s", "minimal_backoff_time=1s",
                    "maximal_backoff_time=2s"], check=True)
    try:
        yield root, cfg, fe
    finally:
        fe.stop()
        remove_students(cfg, LOW, HIGH)
        subprocess.run(["postsuper", "-d", "ALL"], capture_output=True)
        subprocess.run(["postfix", "stop"], capture_output=True)
        shutil.copy2(saved, MAIN_CF)
        for path in ("/etc/sudoers.d/wod-backend-setup-test",
                     "/etc/cron.d/wod-backend-setup-test",
                     "/etc/postfix/wod-backend-clients", "/etc/postfix/wod-backend-recipients"):
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


def wait_for(what: str, predicate, root: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            log = (root / "maillog").read_text(errors="replace")[-3000:] \
                if (root / "maillog").exists() else ""
            raise AssertionError(f"timed out waiting for {what}\n{log}")
        time.sleep(0.3)


def test_bad_configuration_changes_nothing(host):
    root, cfg, fe = host
    cfg.write_text(config_text(root, fe).replace("concurrency: 20", "concurrency: 0"))
    p = wod(cfg, "setup", "--yes")
    assert p.returncode == 78
    assert p.stderr.strip().splitlines() == [
        "wod-backend: config key mail.concurrency: must be at least 1"]
    with pytest.raises(KeyError):
        pwd.getpwnam(USER)
    assert not (root / "state").exists()
    (root / "etc" / "fe.pass").unlink()
    cfg.write_text(config_text(root, fe))
    p = wod(cfg, "setup", "--yes")
    assert p.returncode == 78 and "frontend.password_file: secret file" in p.stderr
    assert "is missing: the operator of that service must provide it" in p.stderr
    with pytest.raises(KeyError):
        pwd.getpwnam(USER)


def test_setup_then_orders_by_smtp(host):
    root, cfg, fe = host
    p = wod(cfg, "setup", "--check")
    assert p.returncode == 2 and f"backend user: {USER}" in p.stdout, p.stdout + p.stderr
    with pytest.raises(KeyError):
        pwd.getpwnam(USER)  # --check changed nothing

    p = wod(cfg, "setup", "--yes")
    assert p.returncode == 0, p.stdout + p.stderr
    pw = pwd.getpwnam(USER)
    assert pw.pw_uid < 1000  # a system account: never a student's uid
    st = os.stat(root / "state")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, 0o700)
    secret_path = root / "etc" / "intake.secret"
    st = os.stat(secret_path)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (pw.pw_uid, 0o600)
    assert os.stat(root / "etc" / "fe.pass").st_uid == pw.pw_uid
    assert stat.S_IMODE(os.stat("/etc/sudoers.d/wod-backend-setup-test").st_mode) == 0o440
    cron = Path("/etc/cron.d/wod-backend-setup-test").read_text()
    assert f"* * * * *  {USER}  {Path(WOD)} outbox flush >/dev/null" in cron
    assert (Path(pw.pw_dir) / ".procmailrc").read_text().count(str(cfg)) == 1
    assert all(pwd.getpwnam(f"student{n}").pw_uid == UID_BASE + n
               for n in range(LOW, HIGH + 1))

    secret = secret_path.read_text().strip()
    send("127.0.0.2", secret, LOW)  # the frontend's address: allowed
    wait_for("the password at the frontend", lambda: fe.state.students[LOW]["password"],
             root)
    assert password_works(f"student{LOW}", fe.state.students[LOW]["password"])
    wait_for("the customer active", lambda: fe.state.customers[4711]["active"] is True, root)

    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send("127.0.0.3", secret, LOW + 1)  # any other address: refused at RCPT
    time.sleep(1)
    history = json.loads(wod(cfg, "history", "--json").stdout)
    assert [e["students"] for e in history] == [[LOW]]

    p = wod(cfg, "setup", "--check")
    assert (p.returncode, p.stdout.strip()) == (
        0, "host matches the configuration: nothing to do"), p.stdout + p.stderr
    p = wod(cfg, "setup", "--yes")
    assert p.returncode == 0 and "host matches the configuration: nothing to do" in p.stdout

    cfg.write_text(config_text(root, fe, concurrency=10))
    p = wod(cfg, "setup", "--check")
    assert p.returncode == 2
    assert p.stdout.strip() == "postfix: local_destination_concurrency_limit = 10"


def test_maintenance_holds_mails_then_lets_them_through(host):
    root, cfg, fe = host
    assert wod(cfg, "setup", "--yes").returncode == 0
    assert wod(cfg, "maintenance", "on").stdout.strip() == \
        "maintenance on: order mails are held"
    secret = (root / "etc" / "intake.secret").read_text().strip()
    send("127.0.0.2", secret, LOW + 2)
    wait_for("postfix to defer the held order", lambda: "status=deferred" in (
        root / "maillog").read_text(errors="replace"), root)
    assert json.loads(wod(cfg, "history", "--json").stdout) == []
    assert wod(cfg, "maintenance", "off").stdout.strip() == "maintenance off"
    wait_for("the held order done on postfix's retry",
             lambda: fe.state.students[LOW + 2]["password"], root)
