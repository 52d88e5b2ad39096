"""A hostile student and a full disk (root: real accounts, a tmpfs state_dir).

Students: their moves scripted: a 5,000-level deep tree, a process that respawns files
in the home, one that forks and exits every few ms. Faults: a tmpfs mounted as
state_dir, filled to a few KiB. The MTA contract: only 75 makes postfix retry, so a
fault is 0 or 75, never 70.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from support.accounts import students_config
from support.cli import REPO, WOD, invoke
from support.content import make_workshop
from wod_backend.system.kill import pids_of

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real users")
FIRST, LAST, UID_BASE = 9401, 9406, 40000


def _history(cfg: Path) -> list[dict]:
    return json.loads(invoke(["--config", str(cfg), "history", "--json"]).out)


# -- a full state_dir ---------------------------------------------------------------------

@root_only
@pytest.mark.parametrize("free_kib", [256, 128, 64, 32])
def test_full_state_dir_is_a_temporary_failure_and_a_retry_converges(site, free_kib):
    state = site.root / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(state)],
                   check=True)
    try:
        assert invoke(["--config", str(site.config), "history"]).code == 0  # journal made
        filler = state / "filler"
        with open(filler, "wb") as fh:
            try:
                fh.write(b"\0" * (1 << 20))
            except OSError:
                pass
        st = os.statvfs(state)
        free = st.f_bavail * st.f_frsize
        os.truncate(filler, max(0, os.path.getsize(filler) - (free_kib << 10) + free))
        make_workshop(site.public, "WKSHP-Disk", files={"big.bin": b"z" * (300 << 10)})
        mail = (b"Message-ID: <disk-%d@frontend>\nSubject: CREATE 7 0\n\nWKSHP-Disk\n"
                % free_kib)
        p = subprocess.run([WOD, "--config", str(site.config), "mail"], input=mail,
                           capture_output=True, timeout=120)
        assert p.returncode in (0, 75), p.stderr
        filler.unlink()
        p = subprocess.run([WOD, "--config", str(site.config), "mail"], input=mail,
                           capture_output=True, timeout=120)  # postfix delivering again
        assert p.returncode == 0, p.stderr
        home = site.root / "homes" / "student7" / "WKSHP-Disk"
        assert (home / "big.bin").read_bytes() == b"z" * (300 << 10)
        assert json.loads((home / "0-ReadMeFirst.ipynb").read_text())["cells"]
        outcomes = [e["outcome"] for e in _history(site.config) if e["students"] == [7]]
        assert outcomes[0] in ("done", "duplicate")
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


# -- hostile students (real accounts) -----------------------------------------------------

@pytest.fixture
def students(tmp_path: Path):
    with students_config(tmp_path, FIRST, LAST, UID_BASE, "variables: {BRANDING: B, "
                         "BACKEND_HOST: localhost, SURVEYURL: 'https://s.example'}\n"
                         ) as (path, homes):
        assert invoke(["--config", str(path), "students", "ensure"]).code == 0
        yield path, homes


def as_student(n: int, script: str) -> subprocess.Popen:
    pw = pwd.getpwnam(f"student{n}")
    return subprocess.Popen(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                             "--init-groups", "bash", "-c", script], cwd=pw.pw_dir,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def alive(n: int) -> list[int]:
    return pids_of(UID_BASE + n)


@root_only
def test_deep_tree_is_wiped_and_processes_end(students):
    cfg, homes = students
    n = FIRST
    assert invoke(["--config", str(cfg), "create", "WKSHP-Python101", str(n)]).code == 0
    pw = pwd.getpwnam(f"student{n}")
    p = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                        "--init-groups", "/usr/bin/python3", "-c",
                        "import os\nfor i in range(5000):\n    os.mkdir('d')\n    os.chdir('d')\n"
                        "open('f', 'w').close()\n"],
                       cwd=pw.pw_dir, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    sleeper = as_student(n, "sleep 300")
    try:
        r = invoke(["--config", str(cfg), "cleanup", "WKSHP-Python101", str(n)])
        assert r.code == 0, r.err + r.out
        assert os.listdir(homes / f"student{n}") == []
        assert alive(n) == []
    finally:
        sleeper.kill()
        sleeper.wait()


RESPAWN = "while true; do for i in $(seq 1 10); do : > planted-$i; done; sleep 0.005; done"
FORK_AND_EXIT = "f() { sleep 0.002; f & exit 0; }; f"


@root_only
@pytest.mark.parametrize("action", ["CLEANUP", "PURGE", "CREATE"])
def test_respawning_and_forking_processes_end_before_the_wipe(students, action):
    cfg, homes = students
    n = FIRST + 1 + ["CLEANUP", "PURGE", "CREATE"].index(action)
    assert invoke(["--config", str(cfg), "create", "WKSHP-Python101", str(n)]).code == 0
    procs = [as_student(n, RESPAWN), as_student(n, FORK_AND_EXIT)]
    try:
        deadline = time.monotonic() + 5
        while not (homes / f"student{n}" / "planted-1").exists() and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        assert (homes / f"student{n}" / "planted-1").exists()
        r = invoke(["--config", str(cfg), action.lower(), "WKSHP-Python101", str(n)])
        assert r.code == 0, r.err + r.out
        assert alive(n) == []
        time.sleep(0.2)  # anything left running would plant again meanwhile
        left = sorted(os.listdir(homes / f"student{n}"))
        if action == "CREATE":
            skeleton = os.listdir(REPO / "workshops-public" / "skeleton")
            assert left == sorted([".jupyter", ".ssh", "WKSHP-Python101", *skeleton])
        else:
            assert left == []
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait()


@root_only
def test_a_failed_step_still_ends_the_processes(students, monkeypatch):
    cfg, homes = students
    n = FIRST + 5
    assert invoke(["--config", str(cfg), "create", "WKSHP-Python101", str(n)]).code == 0
    sleeper = as_student(n, "sleep 300")
    try:
        from wod_backend.system import passwords
        from wod_backend.errors import StepFailed

        def broken(pairs):
            raise StepFailed("chpasswd failed: Authentication token manipulation error")

        monkeypatch.setattr(passwords, "set_linux_passwords", broken)
        r = invoke(["--config", str(cfg), "purge", "WKSHP-Python101", str(n)])
        assert r.code == 70 and "set_linux_password: chpasswd failed" in r.err
        assert alive(n) == []  # ended all the same
        h = json.loads(invoke(["--config", str(cfg), "history", "--json"]).out)[0]
        assert "kill_processes ok (after the failure)" in h["detail"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_wipe_is_iterative_for_any_depth(tmp_path):
    from wod_backend.system.homes import FD_WINDOW, remove_entry

    top = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fd = top
    for _ in range(FD_WINDOW * 3 + 7):  # past the descriptor window: reopened via ..
        os.mkdir("d", dir_fd=fd)
        os.close(os.open("f", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
        os.symlink("/etc", "link", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        if fd != top:
            os.close(fd)
        fd = nfd
    os.close(fd)
    try:
        remove_entry(top, "d")
        assert sorted(os.listdir(tmp_path)) == ["f", "link"]  # the top level's own
        assert os.path.isdir("/etc/ssl")  # the links were removed, never followed
    finally:
        os.close(top)


def test_render_bound_survives_many_files(site):
    files = {f"n{i}.py": "{{ STDID }}\n" for i in range(50)}
    make_workshop(site.public, "WKSHP-Many", files=files)
    r = invoke(["--config", str(site.config), "create", "WKSHP-Many", "9"])
    assert r.code == 0, r.err
    assert (site.root / "homes/student9/WKSHP-Many/n49.py").read_text() == "9\n"
