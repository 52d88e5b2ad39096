"""A real procmail delivering through procmailrc.example into `wod-backend mail`.

The recipe file is the shipped one with only its paths changed; procmail clears the
environment, so everything must come from the recipe. The exit code of wod-backend must
become procmail's, since that is what postfix acts on (75: retry, others: bounce).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from support.cli import DATA, REPO, WOD, invoke

pytestmark = pytest.mark.skipif(shutil.which("procmail") is None, reason="needs procmail")


def recipe(tmp_path: Path, config: Path) -> Path:
    text = (REPO / "procmailrc.example").read_text()
    text = text.replace("WOD_BACKEND=/opt/wod-backend/venv/bin/wod-backend",
                        f"WOD_BACKEND={WOD}")
    text = text.replace("WOD_CONFIG=/etc/wod-backend/config.yml", f"WOD_CONFIG={config}")
    text = text.replace("LOGFILE=$HOME/procmail.log", f"LOGFILE={tmp_path}/procmail.log")
    assert str(WOD) in text and str(config) in text
    rc = tmp_path / "procmailrc"
    rc.write_text(text)
    return rc


def deliver(rc: Path, message: bytes) -> int:
    return subprocess.run(["procmail", "-m", str(rc)], input=message, timeout=120,
                          capture_output=True).returncode


def test_good_order_runs_and_exits_0(tmp_path, demo, demo_cfg):
    rc = recipe(tmp_path, demo)
    mail = (DATA / "mails/samples/admin-test-challenge.eml").read_bytes()
    assert deliver(rc, mail) == 0
    home = demo_cfg.students.home_root / "student3" / "CHLG-Python101"
    assert (home / "0-ReadMeFirst.ipynb").is_file()
    entry = json.loads(invoke(["--config", str(demo), "history", "--json"]).out)[0]
    assert entry["outcome"] == "done" and entry["message_id"] == "<test-3@backend.example.org>"


def test_bad_order_exit_65_reaches_procmail(tmp_path, demo, demo_cfg):
    rc = recipe(tmp_path, demo)
    mail = (DATA / "mails/samples/broken-sender.eml").read_bytes()
    assert deliver(rc, mail) == 65
    log = (tmp_path / "procmail.log").read_bytes()
    assert b"Program failure (65)" in log and b"bad student number" in log
    assert not any(demo_cfg.students.home_root.iterdir())


def test_temporary_failure_exit_75_so_postfix_retries(tmp_path, demo, demo_cfg):
    rc = recipe(tmp_path, demo)
    shutil.rmtree(demo_cfg.state_dir)
    demo_cfg.state_dir.write_text("not a directory")  # the journal cannot be opened
    mail = (DATA / "mails/samples/frontend-create.eml").read_bytes()
    assert deliver(rc, mail) == 75
    assert not (demo_cfg.students.home_root / "student12").exists()


def test_mail_text_never_reaches_a_shell(tmp_path, demo):
    rc = recipe(tmp_path, demo)
    marker = tmp_path / "pwned"
    mail = f"Subject: CREATE 3 0 $(touch {marker}) `touch {marker}`\n\n" \
           f"WKSHP-API101; touch {marker}\n".encode()
    assert deliver(rc, mail) == 65
    assert not marker.exists()
