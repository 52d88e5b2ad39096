"""`wod-backend sweep`: students' processes checked every minute, abuse ended at once.

Run as the backend user (the schedule, every minute). It reads /proc (no privilege
needed): every process whose real uid is a student's. A process whose name or a word
of its command line matches `sweep.patterns` (miners, as shell patterns), or that used
more than `sweep.cpu_percent` of a core over the last `sweep.cpu_minutes`, makes its
student evicted now: an EVICT order (journaled, source `sweep`, with the evidence: the
command line, its CPU time) stops the hub server, sets and reports a new password and
ends every process of the student; the home is kept for inspection until the
frontend's CLEANUP wipes it. CPU use is measured between sweeps: each keeps the CPU time
of each student process in `state_dir/sweep.json` (a process's start counts as its
first sample). With students.limits and no systemd, the sweep also moves the students'
processes into their cgroups (through the sudo helper: root's).
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.order import Action, Order
from wod_backend.state import journal as jr

SAMPLES = "sweep.json"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    pid: int
    student: int
    name: str
    command: str
    cpu: float  # seconds, user + system
    started: float  # epoch seconds

    @property
    def key(self) -> str:
        return f"{self.pid}:{self.started:.0f}"


@dataclass(frozen=True)
class Offence:
    proc: Proc
    why: str

    def evidence(self) -> str:
        return (f"sweep: pid {self.proc.pid} ({self.proc.name}) {self.why}; CPU time "
                f"{self.proc.cpu:.1f}s; command line: {self.proc.command[:300]}")


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def scan(cfg: Config) -> list[Proc]:
    """Every live process whose real uid is one of this backend's students."""
    low, high = cfg.students.uid_base + cfg.students.min, cfg.students.uid_base + \
        cfg.students.max
    boot, out = _boot_time(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            uid = os.stat(f"/proc/{entry}").st_uid
            if not low <= uid <= high:
                continue
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("utf-8", "replace")
            name, fields = stat[stat.index("(") + 1:stat.rindex(")")], \
                stat[stat.rindex(")") + 2:].split()
            if fields[0] in ("Z", "X"):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                command = fh.read(4096).replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        out.append(Proc(int(entry), uid - cfg.students.uid_base, name, command.strip(),
                        (int(fields[11]) + int(fields[12])) / TICKS,
                        boot + int(fields[19]) / TICKS))
    return out


def matches(cfg: Config, proc: Proc) -> Optional[str]:
    """The pattern a process's name or a word of its command line matches."""
    words = [proc.name] + [os.path.basename(w) for w in proc.command.split()[:8]]
    for pattern in cfg.sweep.patterns:
        for word in words:
            if word and fnmatch.fnmatch(word.lower(), pattern.lower()):
                return pattern
    return None


def judge(cfg: Config, procs: list[Proc], samples: dict[str, list[list[float]]],
          now: float) -> list[Offence]:
    """The offences among `procs`; `samples` (CPU time per process over time) is
    updated in place with this sweep's."""
    window = cfg.sweep.cpu_minutes * 60
    budget = cfg.sweep.cpu_percent / 100
    offences = []
    for p in procs:
        history = samples.setdefault(p.key, [[p.started, 0.0]])
        history.append([now, p.cpu])
        # The oldest sample at least a window old, then drop what is older than it.
        old = [s for s in history if now - s[0] >= window]
        if old:
            history[:] = [old[-1]] + [s for s in history if now - s[0] < window]
        pattern = matches(cfg, p)
        if pattern:
            offences.append(Offence(p, f"matches the pattern {pattern!r}"))
        elif old and (p.cpu - old[-1][1]) / (now - old[-1][0]) >= budget:
            share = (p.cpu - old[-1][1]) / (now - old[-1][0])
            offences.append(Offence(p, f"used {share:.0%} of a core over the last "
                                       f"{(now - old[-1][0]) / 60:.1f} min (budget "
                                       f"{cfg.sweep.cpu_percent:g}%)"))
    live = {p.key for p in procs}
    for key in [k for k in samples if k not in live]:
        del samples[key]
    return offences


def _load(path: Path) -> dict[str, list[list[float]]]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(path: Path, samples: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(samples))
    os.replace(tmp, path)


@dataclass
class SweepReport:
    processes: int
    students: int
    offences: list[Offence]
    evicted: dict[int, str]  # student -> the EVICT's outcome, or why not
    confined: dict[int, int]
    seconds: float = 0.0
    disk: dict[int, str] = field(default_factory=dict)  # warned or evicted, by student


def sweep(cfg: Config, dry_run: bool = False) -> SweepReport:
    started = time.monotonic()
    procs = scan(cfg)
    path = cfg.state_dir / SAMPLES
    samples = _load(path)
    offences = judge(cfg, procs, samples, time.time())
    if not dry_run:
        _save(path, samples)
    by_student: dict[int, list[Offence]] = {}
    for o in offences:
        by_student.setdefault(o.proc.student, []).append(o)
    evicted = {n: "would be evicted" for n in by_student} if dry_run else \
        {n: evict(cfg, n, [o.evidence() for o in found])
         for n, found in sorted(by_student.items())}
    confined = {} if dry_run else confine(cfg, sorted({p.student for p in procs}
                                                      - set(by_student)))
    disk = {}
    if not dry_run:
        from wod_backend.lifecycle import disk_budget as budget

        disk = budget.check(cfg, evict)
    return SweepReport(len(procs), len({p.student for p in procs}), offences, evicted,
                       confined, time.monotonic() - started, disk)


def evict(cfg: Config, n: int, evidence: list[str]) -> str:
    """EVICT student n (the workshop and customer of its last order), journaled with the
    evidence; the outcome."""
    from wod_backend.errors import WodError
    from wod_backend.intake.pipeline import from_backend

    last = jr.Journal(cfg.state_dir).last_orders([n]).get(n)
    if last is None or not last.workshop or last.customer is None:
        return "not evicted: no order on record for this student (end it by hand)"
    order = Order(Action.EVICT, (n,), last.customer, last.workshop, source="sweep")
    try:
        result = from_backend(cfg, order, "sweep", evidence)
    except WodError as exc:
        return f"failed: {exc.reason}"
    return result.outcome


def confine(cfg: Config, numbers: list[int]) -> dict[int, int]:
    """Without systemd and with limits: the students' processes into their groups."""
    from wod_backend.system.systemd import is_init as systemd_is_init

    if not numbers or not cfg.students.limits.any or systemd_is_init():
        return {}
    from wod_backend.privileged.request import ConfineRequest
    from wod_backend.privileged.root_side import root_side

    side = root_side(cfg)
    try:
        answer = side.ask(ConfineRequest(tuple(numbers))).raise_for_error()
    finally:
        side.close()
    return {int(n): int(moved) for n, moved in answer.results.get("confined", {}).items()}
