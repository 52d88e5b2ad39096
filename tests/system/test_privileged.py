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
from support.accounts import backend_user, install_sudo_rule, remove_students, state_dir
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
            state = state_dir(root, USER)
            content, hooks = root / "content", root / "hooks" / "scripts"
            shutil.copytree(REPO / "workshops-public", content)
            (content / "WKSHP-Reset").mkdir()
            (content / "WKSHP-Reset" / "wod.yml").write_text("name: Reset\nreset: true\n")
            (content / "WKSHP-Reset" / "0-ReadMeFirst.ipynb").write_text(
                '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
            hooks.mkdir(parents=True)
            (hooks / "reset-WKSHP-Reset.sh").write_text("true\n")
            cfg = root / "config.yml"
            cfg.write_text(f"""
students: {{min: {LOW}, max: {HIGH}, uid_base: {UID_BASE}, home_root: {root}/homes,
           kill_grace_seconds: 1}}
content: {{public: {content}}}
hooks: {{public: {root}/hooks}}
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


def test_one_helper_answers_each_request_of_an_order_on_its_own_line(setup):
    _root, cfg = setup
    pw = {n: f"batchPass{'abcd'[n - LOW]}xy" for n in range(LOW, HIGH + 1)}
    batch = [{"student": n, "password": p} for n, p in pw.items()]
    lines = [request(LOW, batch=batch),                             # one chpasswd for all
             request(LOW + 1, password="singReqPwxy2"),             # a group of one student
             request(LOW, batch=[*batch, {"student": HIGH + 1, "password": "abcdefghjkmn"}]),
             request(LOW, batch=[{"student": LOW, "password": "bad pw"}]),
             request(LOW + 2, password="afterRefuseX")]             # still served
    p = as_backend_user(["sudo", "-n", HELPER, "--config", str(cfg)],
                        "".join(json.dumps(line) + "\n" for line in lines))
    answers = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert [a["ok"] for a in answers] == [True, True, False, False, True], answers
    assert "outside the configured range" in answers[2]["error"]
    assert "password does not follow" in answers[3]["error"]
    assert p.returncode == 0  # the last request's code
    # The refused batches changed nothing: what the others set still holds.
    assert password_works(f"student{LOW}", pw[LOW])
    assert password_works(f"student{LOW + 1}", "singReqPwxy2")
    assert password_works(f"student{LOW + 2}", "afterRefuseX")
    assert password_works(f"student{HIGH}", pw[HIGH])


@pytest.fixture
def counted(setup):
    """The same site, its helper behind a wrapper that counts how often sudo starts it."""
    root, cfg = setup
    starts, wrapper = root / "helper-starts", root / "counting-helper"
    wrapper.write_text(f"#!/bin/sh\necho start >> {starts}\nexec {HELPER} \"$@\"\n")
    wrapper.chmod(0o755)
    counted_cfg = root / "counted.yml"
    counted_cfg.write_text(cfg.read_text() + f"privileged: {{mode: sudo, helper: {wrapper}}}\n")
    counted_cfg.chmod(0o644)
    rule = install_sudo_rule(Path("/etc/sudoers.d/wod-backend-priv-counted"), counted_cfg,
                             USER)
    try:
        yield counted_cfg, starts
    finally:
        rule.unlink(missing_ok=True)
        starts.unlink(missing_ok=True)


def test_a_batch_order_starts_one_helper_and_one_chpasswd(counted):
    cfg, starts = counted
    wod = str(Path(sys.executable).parent / "wod-backend")
    before = {n: shadow_hash(f"student{n}") for n in range(LOW, HIGH + 1)}
    p = as_backend_user([wod, "--config", str(cfg), "reset", "WKSHP-Reset",
                         f"{LOW}-{HIGH}"], "")
    assert p.returncode == 0, p.stderr
    assert starts.read_text() == "start\n"  # one sudo + helper for the whole batch
    assert all(shadow_hash(f"student{n}") != before[n] for n in before)
    p = as_backend_user([wod, "--config", str(cfg), "history", "--limit", "1", "--json"], "")
    detail = json.loads(p.stdout)[0]["detail"]
    assert detail.count(f"one chpasswd for {HIGH - LOW + 1} students") == HIGH - LOW + 1
    starts.unlink()
    p = as_backend_user([wod, "--config", str(cfg), "cleanup", "WKSHP-API101",
                         f"{LOW}-{HIGH}"], "")
    assert p.returncode == 0, p.stderr
    assert starts.read_text() == "start\n"  # 3 groups of root steps x 4 students: one
