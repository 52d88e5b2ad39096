"""The students' lifecycle, pure parts: what `sweep` calls abuse, the EVICT plan, the
limits written for the kernel and systemd, EVICT refused from a mail."""

from __future__ import annotations

import dataclasses

import pytest

from wod_backend.errors import BadOrder
from wod_backend.intake.mail import order_from_envelope, parse_envelope
from wod_backend.lifecycle.sweep import Proc, judge, matches
from wod_backend.order import Action, Order
from wod_backend.planning.catalog import Catalog
from wod_backend.planning.plan import make_plan
from wod_backend.config.sections import Frontend, JupyterHub, Limits, Sweep
from wod_backend.system import limits


def proc(name: str, command: str, cpu: float = 0.0, started: float = 1000.0,
         pid: int = 4242) -> Proc:
    return Proc(pid, 7, name, command, cpu, started)


@pytest.mark.parametrize("name, command, hit", [
    ("xmrig", "./xmrig --donate-level 1 -o pool:3333", "xmrig*"),
    ("python3", "python3 /tmp/.x/XMRig-6.21 -o pool", "xmrig*"),  # a word, any case
    ("bash", "bash -c minerd -a scrypt", "minerd"),
    ("cpuminer-opt", "cpuminer-opt", "cpuminer*"),
    ("bash", "vim minerd-notes.txt", None),  # a word is matched whole
    ("jupyter-lab", "jupyter-lab --ip 127.0.0.1", None),
])
def test_miners_are_found_by_name_or_a_word_of_their_command_line(demo_cfg, name, command,
                                                                   hit):
    assert matches(demo_cfg, proc(name, command)) == hit


def test_cpu_over_budget_for_the_whole_window_is_an_offence(demo_cfg):
    cfg = dataclasses.replace(demo_cfg, sweep=Sweep(cpu_percent=90, cpu_minutes=10))
    samples: dict = {}
    # Started at t=0, idle for an hour, then spinning: the lifetime average is low,
    # the last ten minutes are not.
    assert judge(cfg, [proc("a.out", "./a.out", 10, 0)], samples, 3600) == []
    assert judge(cfg, [proc("a.out", "./a.out", 250, 0)], samples, 3900) == []  # 5 min in
    found = judge(cfg, [proc("a.out", "./a.out", 590, 0)], samples, 4200)
    assert len(found) == 1 and "of a core over the last 10.0 min" in found[0].why
    # A busy minute in ten is no offence; a gone process's samples are forgotten.
    calm: dict = {}
    judge(cfg, [proc("b", "b", 0, 0, pid=5)], calm, 600)
    assert judge(cfg, [proc("b", "b", 60, 0, pid=5)], calm, 1200) == []
    judge(cfg, [], calm, 1300)
    assert calm == {}


def test_evict_keeps_the_home_and_ends_processes_last(demo_cfg, tmp_path):
    cfg = dataclasses.replace(
        demo_cfg, students=dataclasses.replace(demo_cfg.students, manage_accounts=True),
        jupyterhub=JupyterHub(url="http://hub", token_file=tmp_path / "t"),
        frontend=Frontend(url="http://fe", username="m", password_file=tmp_path / "p"))
    order = Order(Action.EVICT, (3,), "4711", "WKSHP-Python101", source="sweep")
    steps = [s.kind.value for s in make_plan(cfg, Catalog(cfg), order).students[0].steps]
    assert steps == ["hub_stop_server", "new_password", "set_linux_password",
                     "report_password", "kill_processes"]


def test_evict_is_never_taken_from_a_mail():
    env = parse_envelope(b"Subject: EVICT 3 4711\n\nWKSHP-Python101\n")
    with pytest.raises(BadOrder, match="unknown action"):
        order_from_envelope(env, 1, 100)


def test_limits_for_the_kernel_and_for_systemd():
    lim = Limits(tasks=64, memory_mb=1024, cpu_percent=150)
    files = limits.settings(lim)
    assert files["pids"] == {"pids.max": "64"}
    assert files["memory"] == {"memory.limit_in_bytes": str(1024 * 2**20)}
    assert files["cpu"]["cpu.cfs_quota_us"] == "150000"
    assert limits.settings(Limits())["pids"] == {"pids.max": "max"}
    assert limits.dropin(lim).decode().splitlines()[1:] == [
        "[Slice]", "TasksMax=64", "MemoryMax=1024M", "CPUQuota=150%"]
    assert not Limits().any and Limits(tasks=1).any
