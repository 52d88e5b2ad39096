"""`wod-backend setup` from a host without the backend user, its postfix settings, sudo
rule or state dir, then orders by SMTP as the frontend sends them (root, real postfix).
"""

from __future__ import annotations

import json
import subprocess
import os
import pwd
import shutil
import smtplib
import stat
import time
from pathlib import Path

import pytest

from support.configs import edit_config
from support.accounts import password_works
from support.cli import WOD
from support.setuphost import (HIGH, LOW, UID_BASE, USER, config_text, send, setup_host,
                               wait_for, wod)

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("postfix") is None, reason="needs postfix")]


@pytest.fixture
def host():
    with setup_host() as site:
        yield site


def test_bad_configuration_changes_nothing(host):
    root, cfg, fe = host
    cfg.write_text(config_text(root, fe))
    edit_config(cfg, {"mail": {"concurrency": 0}})
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
    # setup's doctor mailed a probe through postfix and procmail: journaled, nothing run.
    probes = [e for e in history if e["source"] == "probe"]
    assert [(e["outcome"], e["students"]) for e in probes] == [("probe", [])]
    assert [e["students"] for e in history if e["source"] != "probe"] == [[LOW]]

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
    assert [e for e in json.loads(wod(cfg, "history", "--json").stdout)
            if e["source"] != "probe"] == []
    assert wod(cfg, "maintenance", "off").stdout.strip() == "maintenance off"
    # postfix's next queue run (its backoff is seconds here, minutes in production; a
    # deferral logged "skipped, still being delivered" was sometimes not retried here)
    subprocess.run(["postqueue", "-f"], capture_output=True)
    wait_for("the held order done on postfix's retry",
             lambda: fe.state.students[LOW + 2]["password"], root)
