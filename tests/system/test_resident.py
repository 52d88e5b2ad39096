"""The resident privileged side (privd): the sudo helper started once by root, serving
the backend user over a root-owned socket with every check the helper makes under sudo:
the peer's credentials, the same request validation, the code it runs; without it (or
stale), orders go through sudo as before."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.accounts import backend_user, install_sudo_rule, remove_students, shadow_hash, state_dir
from support.cli import REPO, WOD, invoke
from wod_backend import config
from wod_backend.privileged.client import READY, socket_path

USER = "wodres"
LOW, HIGH, UID_BASE = 9231, 9233, 40300


@pytest.fixture(scope="module")
def site():
    sudoers = Path("/etc/sudoers.d/wod-backend-resident-test")
    with backend_user(USER, "wod-res-") as root:
        cfg = root / "config.yml"
        try:
            (root / "homes").mkdir(mode=0o755)
            state = state_dir(root, USER)
            shutil.copytree(REPO / "workshops-public", root / "content")
            cfg.write_text(f"""
students: {{min: {LOW}, max: {HIGH}, uid_base: {UID_BASE}, home_root: {root}/homes,
           kill_grace_seconds: 1}}
content: {{public: {root}/content}}
state_dir: {state}
mail: {{backend_user: {USER}}}
privileged: {{mode: sudo}}
variables: {{BRANDING: R, SURVEYURL: 'https://s', BACKEND_HOST: localhost}}
""")
            cfg.chmod(0o644)
            assert invoke(["--config", str(cfg), "students", "ensure"]).code == 0
            yield root, cfg, sudoers
        finally:
            subprocess.run([WOD, "--config", str(cfg), "privd", "stop"], capture_output=True)
            sudoers.unlink(missing_ok=True)
            remove_students(cfg, LOW, HIGH)


def privd(cfg: Path, verb: str) -> subprocess.CompletedProcess:
    return subprocess.run([WOD, "--config", str(cfg), "privd", verb], capture_output=True,
                          text=True, timeout=60)


def as_user(uid: int, gid: int, argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                           *argv], capture_output=True, text=True, timeout=120, cwd="/")


def create_as_backend_user(cfg: Path, n: int) -> subprocess.CompletedProcess:
    pw = pwd.getpwnam(USER)
    return as_user(pw.pw_uid, pw.pw_gid, [WOD, "--config", str(cfg), "create",
                                          "WKSHP-API101", str(n)])


def test_the_backend_user_is_served_without_sudo_and_not_without_it(site):
    root, cfg, sudoers = site
    sudoers.unlink(missing_ok=True)  # no sudo rule: only the resident side can do it
    assert privd(cfg, "start").returncode == 0
    assert privd(cfg, "status").returncode == 0
    sock = socket_path(config.load(str(cfg)))
    st = sock.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, pwd.getpwnam(USER).pw_gid, 0o660)
    before = shadow_hash(f"student{LOW}")
    p = create_as_backend_user(cfg, LOW)
    assert p.returncode == 0, p.stdout + p.stderr
    assert shadow_hash(f"student{LOW}") != before
    assert (root / "homes" / f"student{LOW}" / "WKSHP-API101").is_dir()
    assert privd(cfg, "stop").returncode == 0
    p = create_as_backend_user(cfg, LOW)  # no daemon, no sudo rule: nothing happens as root
    assert p.returncode != 0 and "sudo" in p.stdout + p.stderr


def _ask(uid: int, gid: int, sock: Path, lines: list[dict]) -> list[str]:
    """Connect as uid:gid, send the request lines, return what came back (one per line)."""
    script = (
        "import json, socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({str(sock)!r})\n"
        f"for line in {json.dumps([json.dumps(x) for x in lines])}:\n"
        "    s.sendall(line.encode() + b'\\n')\n"
        "s.shutdown(socket.SHUT_WR)\n"
        "data = b''\n"
        "while True:\n"
        "    chunk = s.recv(65536)\n"
        "    if not chunk: break\n"
        "    data += chunk\n"
        "print(data.decode())\n")
    p = as_user(uid, gid, [sys.executable, "-c", script])
    return p.stdout.strip().splitlines() if p.returncode == 0 else [p.stderr.strip()]


def test_only_the_backend_user_is_heard_and_every_request_is_checked(site):
    root, cfg, sudoers = site
    assert privd(cfg, "start").returncode == 0
    try:
        sock = socket_path(config.load(str(cfg)))
        backend = pwd.getpwnam(USER)
        student = pwd.getpwnam(f"student{LOW}")
        # A student cannot even connect (root:backend group, 0660) ...
        out = _ask(student.pw_uid, student.pw_gid, sock, [])
        assert "Permission denied" in out[0], out
        # ... nor with the backend user's group: the peer's uid is checked.
        out = _ask(student.pw_uid, backend.pw_gid, sock, [])
        assert json.loads(out[0])["error"] == f"uid {student.pw_uid} may not ask root", out
        # The backend user: ready, then the helper's own checks, request by request.
        req = {"action": "CREATE", "workshop": "WKSHP-API101", "customer": "0",
               "password": None, "steps": ["verify_home"]}
        out = _ask(backend.pw_uid, backend.pw_gid, sock, [
            {**req, "student": HIGH + 1}, {**req, "student": LOW, "flags": {"ldap": True}},
            {**req, "student": LOW, "steps": ["rm -rf /"]}, {**req, "student": LOW}])
        assert out[0].encode() == READY.strip()
        answers = [json.loads(line) for line in out[1:]]
        assert answers[0]["exit_code"] == 65 and "outside the configured range" in \
            answers[0]["error"]
        assert "flags are not taken from the caller" in answers[1]["error"]
        assert "steps must be a list of" in answers[2]["error"]
        assert answers[3]["ok"] is True
    finally:
        privd(cfg, "stop")


def test_a_stale_daemon_stops_and_the_order_goes_through_sudo(site):
    root, cfg, sudoers = site
    install_sudo_rule(sudoers, cfg, USER)
    assert privd(cfg, "start").returncode == 0
    module = Path(config.__file__)  # the code on disk changes under the running daemon
    st = module.stat()
    try:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        before = shadow_hash(f"student{LOW + 1}")
        p = create_as_backend_user(cfg, LOW + 1)
        assert p.returncode == 0, p.stdout + p.stderr  # through sudo, as before
        assert shadow_hash(f"student{LOW + 1}") != before
        deadline = time.monotonic() + 10
        while privd(cfg, "status").returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert privd(cfg, "status").returncode == 3  # it stopped: the schedule restarts it
    finally:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))
        privd(cfg, "stop")
