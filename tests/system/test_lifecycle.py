"""The students' lifecycle enforced by the backend (root: real accounts, a real hub, the
frontend contract server): processes started through `su -`, as a student's login
would, end for sure; a miner and a process over its CPU budget get their student
evicted by `sweep`; a fork bomb stops at the tasks limit without hurting another
student; a workshop past its duration plus the grace is cleaned up by `expire`;
`reconcile` finds and fixes a server left running and a report dead in the outbox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support import jupyterhub
from support.configs import edit_config
from support.accounts import students_config
from support.cli import invoke
from support.content import make_workshop
from support.frontend import FrontendServer
from support.waiting import wait_for
from wod_backend.system import limits
from wod_backend.system.kill import pids_of

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real users"),
              pytest.mark.skipif(shutil.which("configurable-http-proxy") is None,
                                 reason="needs configurable-http-proxy")]
FIRST, LAST, UID_BASE = 9601, 9612, 46000
CUSTOMER = 300


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = jupyterhub.start(tmp_path_factory.mktemp("lhub") / "hub")
    yield h
    h.stop()


@pytest.fixture(scope="module")
def life(tmp_path_factory, hub):
    tmp = tmp_path_factory.mktemp("life")
    fe = FrontendServer().start()
    fe.add_students(range(FIRST, LAST))  # LAST has no row: its reports are refused (400)
    for cid in range(CUSTOMER, CUSTOMER + 20):
        fe.add_customer(cid)
    fe.add_workshop(1, "WKSHP-Long")
    fe.add_workshop(2, "WKSHP-Brief")
    content = tmp / "content"
    make_workshop(content, "WKSHP-Long", "name: Long\nduration: 4\n")
    make_workshop(content, "WKSHP-Brief", "name: Brief\nduration: 0.0003\n")  # ~1 s
    for name, text in (("fe.pass", "mod-Secret1"), ("hub.token", hub.token)):
        (tmp / name).write_text(text + "\n")
        (tmp / name).chmod(0o600)
    extra = f"""
frontend: {{url: '{fe.url}', username: moderator, password_file: {tmp}/fe.pass, timeout: 5}}
jupyterhub: {{url: '{hub.url}', token_file: {tmp}/hub.token, timeout: 5, spawn_wait: 30}}
sweep: {{cpu_percent: 50, cpu_minutes: 0.05}}
"""
    with students_config(tmp, FIRST, LAST, UID_BASE, extra) as (path, homes):
        edit_config(path, {"students": {"expiry_grace": 0, "limits": {
            "tasks": 40, "memory_mb": 512, "cpu_percent": 150}},
            "content": {"public": str(content)}})
        assert invoke(["--config", str(path), "students", "ensure"]).code == 0
        yield path, homes, fe
        for n in range(FIRST, LAST + 1):
            subprocess.run(["pkill", "-KILL", "-U", str(UID_BASE + n)], check=False)
        time.sleep(0.3)
        for n in range(FIRST, LAST + 1):
            limits.remove_groups(UID_BASE + n)
    fe.stop()


def wod(cfg: Path, *args: str) -> tuple[int, str]:
    r = invoke(["--config", str(cfg), *args])
    return r.code, r.out + r.err


def create(cfg: Path, n: int, workshop: str = "WKSHP-Long") -> None:
    code, out = wod(cfg, "create", workshop, str(n), "--customer", str(CUSTOMER + n - FIRST))
    assert code == 0, out


def su(n: int, script: str) -> subprocess.Popen:
    """A login of the student, the way a person (or ssh) gets one: `su -`."""
    return subprocess.Popen(["su", "-", f"student{n}", "-c", script], cwd="/",
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def alive(n: int) -> list[int]:
    return pids_of(UID_BASE + n)




def history(cfg: Path) -> list[dict]:
    return json.loads(invoke(["--config", str(cfg), "history", "--limit", "200",
                              "--json"]).out)


def test_a_miner_started_through_su_gets_its_student_evicted(life, hub):
    cfg, homes, fe = life
    n = FIRST
    create(cfg, n)
    password = fe.state.students[n]["password"]
    assert hub.wait_server(f"student{n}", ready=True, bound=30)
    home = homes / f"student{n}"
    shutil.copy("/bin/sleep", home / "xmrig")
    os.chown(home / "xmrig", UID_BASE + n, UID_BASE + n)
    miner = su(n, "./xmrig 300")
    forker = su(n, "f() { sleep 0.002; f & exit 0; }; f")
    wait_for("the miner", lambda: any(Path(f"/proc/{p}/comm").read_text().strip() == "xmrig"
                                      for p in alive(n) if Path(f"/proc/{p}").exists()))
    code, out = wod(cfg, "sweep", "--dry-run")
    assert code == 0 and f"student{n}: EVICT would be evicted" in out, out
    assert alive(n) and fe.state.students[n]["password"] == password  # dry: nothing done
    code, out = wod(cfg, "sweep")
    assert code == 0, out
    assert "matches the pattern 'xmrig*'" in out and f"student{n}: EVICT done" in out
    assert alive(n) == []  # the miner, the fork-and-exit chain, the shells
    assert fe.state.students[n]["password"] not in (None, password)
    assert hub.wait_server(f"student{n}", ready=False, bound=30)
    assert (home / "xmrig").exists() and (home / "WKSHP-Long").is_dir()  # kept
    entry = history(cfg)[0]
    assert entry["source"] == "sweep" and entry["action"] == "EVICT"
    assert "command line: ./xmrig 300" in entry["detail"]
    status = json.loads(invoke(["--config", str(cfg), "status", str(n), "--json"]).out)[0]
    assert status["state"] == "evicted"
    # Its CLEANUP comes later and wipes the home kept for inspection.
    code, out = wod(cfg, "cleanup", "WKSHP-Long", str(n), "--customer", str(CUSTOMER))
    assert code == 0, out
    assert os.listdir(home) == []
    for p in (miner, forker):
        p.wait(10)


def test_a_process_over_its_cpu_budget_gets_its_student_evicted(life):
    cfg, _homes, fe = life
    n = FIRST + 1
    create(cfg, n)
    spinner = su(n, "while :; do :; done")
    wait_for("the loop", lambda: alive(n))
    assert wod(cfg, "sweep")[0] == 0  # its first sample
    assert alive(n)
    time.sleep(3.5)  # sweep.cpu_minutes: 0.05
    code, out = wod(cfg, "sweep")
    assert code == 0 and f"student{n}: EVICT done" in out, out
    assert "of a core over the last" in out
    assert alive(n) == []
    spinner.wait(10)


def test_a_fork_bomb_stops_at_the_tasks_limit_without_hurting_another(life):
    cfg, homes, _fe = life
    n, other = FIRST + 2, FIRST + 3
    create(cfg, n)
    create(cfg, other)
    bomb = ("sleep 3; /usr/bin/python3 -c \"import os, time\nn = 0\nfor i in range(500):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(120)\n        os._exit(0)\n    n += 1\n"
            "open('forked', 'w').write(str(n))\ntime.sleep(120)\"")
    p = su(n, bomb)
    wait_for("the login shell", lambda: alive(n))
    code, out = wod(cfg, "sweep")  # places the shell in the student's groups
    assert code == 0 and "placed in their limits' groups" in out, out
    wait_for("the bomb", lambda: (homes / f"student{n}" / "forked").exists(), bound=60)
    forked = int((homes / f"student{n}" / "forked").read_text())
    assert forked < 40
    assert len(alive(n)) <= 40
    assert (limits.group("pids", UID_BASE + n) / "pids.max").read_text().strip() == "40"
    # Another student is unharmed: a login and 20 processes of its own.
    r = subprocess.run(["su", "-", f"student{other}", "-c",
                        "for i in $(seq 20); do sleep 0.5 & done; wait; echo fine"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "fine", r.stderr
    # And the frozen group's kill ends the whole bomb at its CLEANUP.
    code, out = wod(cfg, "cleanup", "WKSHP-Long", str(n), "--customer", str(CUSTOMER + 2))
    assert code == 0, out
    assert alive(n) == []
    p.wait(10)


def test_a_workshop_past_its_duration_and_grace_is_cleaned_up(life, hub):
    cfg, homes, fe = life
    n, staying = FIRST + 4, FIRST + 5
    create(cfg, n, "WKSHP-Brief")
    create(cfg, staying, "WKSHP-Long")
    assert hub.wait_server(f"student{n}", ready=True, bound=30)
    password = fe.state.students[n]["password"]
    time.sleep(1.5)  # duration 0.0003 h, students.expiry_grace 0
    code, out = wod(cfg, "expire", "--dry-run")
    assert code == 0 and f"student{n}: WKSHP-Brief" in out and "due" in out, out
    assert f"student{staying}" not in out
    code, out = wod(cfg, "expire")
    assert code == 0 and f"student{n}: WKSHP-Brief for customer {CUSTOMER + 4}" in out, out
    customer = fe.state.customers[CUSTOMER + 4]
    assert customer["cleaned"] is True and customer["active"] is True  # set by the CREATE
    assert fe.state.students[n]["password"] not in (None, password)
    assert fe.state.students[n]["assigned"] is False
    assert hub.wait_server(f"student{n}", ready=False, bound=30)
    assert os.listdir(homes / f"student{n}") == []
    entry = next(e for e in history(cfg) if e["students"] == [n])
    assert entry["source"] == "expire" and entry["action"] == "CLEANUP"
    assert "without a CLEANUP" in entry["detail"]
    assert wod(cfg, "expire")[1].strip() == "nobody is due"  # once only
    assert (homes / f"student{staying}" / "WKSHP-Long").is_dir()


def test_reconcile_finds_and_fixes_a_running_server_and_a_dead_report(life, hub):
    cfg, _homes, fe = life
    left_running, refused = FIRST + 6, LAST
    create(cfg, left_running)
    assert hub.wait_server(f"student{left_running}", ready=True, bound=30)
    code, out = wod(cfg, "cleanup", "WKSHP-Long", str(left_running), "--customer",
                    str(CUSTOMER + 6))
    assert code == 0, out
    assert hub.wait_server(f"student{left_running}", ready=False, bound=30)
    r = hub.api("POST", f"users/student{left_running}/server")  # started behind our back
    assert r.status_code in (201, 202), r.text
    assert hub.wait_server(f"student{left_running}", ready=True, bound=30)
    create(cfg, refused)  # the frontend has no row for it: its password PUT is refused
    assert refused not in fe.state.students
    code, out = wod(cfg, "reconcile", f"{FIRST + 6}-{LAST}")
    assert code == 1, out
    assert f"student{left_running}: server running although the last order (CLEANUP" in out
    assert f"student{refused}: frontend call PUT student/{refused} is dead" in out
    fe.add_students(range(refused, refused + 1))  # the operator fixes the frontend
    code, out = wod(cfg, "reconcile", f"{FIRST + 6}-{LAST}", "--fix")
    assert code == 0, out
    assert hub.wait_server(f"student{left_running}", ready=False, bound=30)
    assert fe.state.students[refused]["password"]
    code, out = wod(cfg, "reconcile", f"{FIRST + 6}-{LAST}")
    assert code == 0 and out.strip() == "backend, hub and frontend agree", out
