"""The privileged entry point, used as the unprivileged backend user through sudo."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.cli import REPO, invoke
from support.accounts import backend_user, install_sudo_rule, remove_students
from support.accounts import password_works, shadow_hash

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("sudo") is None, reason="needs sudo")]

USER = "wodpriv"
LOW, HIGH, UID_BASE = 9201, 9204, 40000
HELPER = str(Path(sys.executable).parent / "wod-backend-priv")


@pytest.fixture(scope="module")
def setup():
    sudoers = Path("/etc/sudoers.d/wod-backend-priv-test")
    with backend_user(USER, "wod-priv-") as root:
        try:
            (root / "homes").mkdir(mode=0o755)
            state = root / "state"
            state.mkdir(mode=0o700)
            pw = pwd.getpwnam(USER)
            os.chown(state, pw.pw_uid, pw.pw_gid)
            cfg = root / "config.yml"
            cfg.write_text(f"""
students: {{min: {LOW}, max: {HIGH}, uid_base: {UID_BASE}, home_root: {root}/homes}}
content: {{public: {REPO}/workshops-public}}
state_dir: {state}
""")
            cfg.chmod(0o644)
            install_sudo_rule(sudoers, cfg, USER)
            assert invoke(["--config", str(cfg), "students", "ensure"]).code == 0
            yield root, cfg
        finally:
            sudoers.unlink(missing_ok=True)
            remove_students(root / "config.yml", LOW, HIGH)


def as_backend_user(argv: list[str], request: dict | str) -> subprocess.CompletedProcess:
    pw = pwd.getpwnam(USER)
    data = request if isinstance(request, str) else json.dumps(request)
    return subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                           "--init-groups", *argv], input=data.encode(),
                          capture_output=True, timeout=60, cwd="/")


def request(student, steps=("set_linux_password",), password="abcdefghjkmn", **kw) -> dict:
    return {"action": "CREATE", "student": student, "workshop": "WKSHP-API101",
            "customer": "0", "password": password, "steps": list(steps), **kw}


def helper(cfg: Path, req) -> tuple[int, dict]:
    p = as_backend_user(["sudo", "-n", HELPER, "--config", str(cfg)], req)
    return p.returncode, (json.loads(p.stdout.decode().strip().splitlines()[-1])
                          if p.stdout.strip() else {})


def test_valid_request_sets_the_password(setup):
    _root, cfg = setup
    code, answer = helper(cfg, request(LOW))
    assert (code, answer["ok"]) == (0, True), answer
    assert password_works(f"student{LOW}", "abcdefghjkmn")


@pytest.mark.parametrize("student", [HIGH + 1, LOW - 1, 0, -1, "root", "9201", None, 1.5])
def test_student_outside_the_range_is_refused(setup, student):
    _root, cfg = setup
    before = Path("/etc/shadow").read_bytes()
    code, answer = helper(cfg, request(student))
    assert code == 65 and not answer["ok"]
    assert "outside the configured range" in answer["error"]
    assert Path("/etc/shadow").read_bytes() == before


@pytest.mark.parametrize("req, phrase", [
    (request(LOW, steps=["run_shell"]), "steps must be a list of"),
    (request(LOW, steps=[]), "steps must be a list of"),
    (request(LOW, password="short"), "password does not follow"),
    (request(LOW, password="has space 12"), "password does not follow"),
    (request(LOW, workshop="../../etc"), "bad workshop name"),
    (request(LOW, customer="1; rm"), "bad customer id"),
    (request(LOW, flags={"compile": ["../../bin/sh"]}), "flags are not taken from the caller"),
    (request(LOW, compile="a.sh"), "compile must be a list"),
    (request(LOW, steps=["compile"], compile=["../../bin/sh"]),
     "script ../../bin/sh is not in the compile list of WKSHP-API101's wod.yml"),
    ("not json", "request is not JSON"),
])
def test_malformed_requests_are_refused(setup, req, phrase):
    _root, cfg = setup
    before = shadow_hash(f"student{LOW}")
    code, answer = helper(cfg, req)
    assert code == 65 and phrase in answer["error"]
    assert shadow_hash(f"student{LOW}") == before


def test_sudo_allows_nothing_else(setup):
    root, cfg = setup
    other = root / "other.yml"
    shutil.copy(cfg, other)
    for argv in (["sudo", "-n", HELPER, "--config", str(other)],  # another configuration
                 ["sudo", "-n", HELPER],                          # no configuration
                 ["sudo", "-n", "/bin/sh", "-c", "id"],           # another program
                 ["sudo", "-n", "chpasswd", "-e"]):
        p = as_backend_user(argv, request(LOW))
        # sudo -n: no rule matches, so it would need a password it may not ask for
        assert p.returncode == 1 and b"a password is required" in p.stderr, p.stderr
        assert p.stdout == b""


def test_helper_refuses_a_config_others_can_write(setup):
    root, cfg = setup
    cfg.chmod(0o666)
    try:
        code, answer = helper(cfg, request(LOW))
        assert code == 78 and "must be owned by root and writable by root only" in \
            answer["error"]
    finally:
        cfg.chmod(0o644)


def test_helper_refuses_to_run_without_root(setup):
    _root, cfg = setup
    p = as_backend_user([HELPER, "--config", str(cfg)], request(LOW))
    assert p.returncode == 77 and b"must run as root" in p.stdout
