"""What one student may use (students.limits), and the groups that hold their processes.

Where systemd is PID 1, a drop-in for the student's user slice (`user-UID.slice`) sets
TasksMax, MemoryMax and CPUQuota: every login (pam_systemd) and every service of the
user lands in it, so the limits hold from the first process. Elsewhere the kernel's
cgroups (v1: `pids`, `memory`, `cpu`, `freezer` under /sys/fs/cgroup) are used
directly: a group `wod-backend/UID` per controller and student, with the limits
written into it; a student's processes enter it when `sweep` (every minute) or an
order finds them, and their children are born in it. That is best effort: a process
lives outside the group until it is found (a minute at most), nothing more.

The freezer group also makes ending processes certain (system/kill.py): freeze the
group, kill every process of the uid, thaw: a process that forks and exits every few
milliseconds cannot run, let alone fork, while frozen. Everything here is root's and
resolves paths only under /sys/fs/cgroup and /etc/systemd (root's).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

from wod_backend.config.sections import Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "wod-backend"
CONTROLLERS = ("pids", "memory", "cpu", "freezer")
CFS_PERIOD_US = 100_000
DROPIN = "50-wod-backend.conf"


def v1_controllers() -> list[str]:
    """The cgroup v1 controllers mounted here, of those we use."""
    return [c for c in CONTROLLERS if (CGROUP_ROOT / c / "tasks").is_file()]


def group(controller: str, uid: int) -> Path:
    return CGROUP_ROOT / controller / PARENT / str(uid)


def settings(limits: Limits) -> dict[str, dict[str, str]]:
    """The v1 files each controller's group gets (unlimited where a limit is unset)."""
    return {
        "pids": {"pids.max": str(limits.tasks) if limits.tasks else "max"},
        "memory": {"memory.limit_in_bytes":
                   str(limits.memory_mb * 2**20) if limits.memory_mb else "-1"},
        "cpu": {"cpu.cfs_period_us": str(CFS_PERIOD_US),
                "cpu.cfs_quota_us": str(limits.cpu_percent * CFS_PERIOD_US // 100)
                if limits.cpu_percent else "-1"},
        "freezer": {},
    }


def ensure_groups(uid: int, limits: Limits, apply: bool = True) -> list[str]:
    """The student's groups with `limits` written into them; what differed."""
    changed = []
    wanted = settings(limits)
    for controller in v1_controllers():
        path = group(controller, uid)
        if not path.is_dir():
            changed.append(f"{path}: created")
            if not apply:
                continue
            path.mkdir(parents=True, exist_ok=True)
        for name, value in wanted[controller].items():
            current = _read(path / name)
            if current is not None and _same(name, current, value):
                continue
            changed.append(f"{path / name}: {current} -> {value}")
            if apply:
                (path / name).write_text(value)
    return changed


def _same(name: str, current: str, value: str) -> bool:
    if name == "memory.limit_in_bytes" and value == "-1":
        return int(current) >= 2**62  # the kernel shows "unlimited" as a huge number
    return current == value


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def place(uid: int, pids: list[int]) -> int:
    """Move these processes of the student into the student's groups (those that
    exist); how many were moved (gone meanwhile: not counted)."""
    moved = 0
    controllers = v1_controllers()
    for pid in pids:
        ok = False
        inside = _groups_of(pid)
        for controller in controllers:
            procs = group(controller, uid) / "cgroup.procs"
            if inside.get(controller) == f"/{PARENT}/{uid}" or not procs.parent.is_dir():
                continue  # already there (the costly part is the move: skip it)
            try:
                procs.write_text(str(pid))
                ok = True
            except OSError:  # ESRCH: gone
                pass
        moved += ok
    return moved


def _groups_of(pid: int) -> dict[str, str]:
    """controller -> the process's group in it (/proc/PID/cgroup, v1 lines)."""
    out: dict[str, str] = {}
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                out[controller] = parts[2]
    return out


def freeze_file(uid: int) -> Optional[tuple[Path, str, str]]:
    """(the file, its frozen value, its thawed value) for the student's processes."""
    v1 = group("freezer", uid) / "freezer.state"
    if v1.is_file():
        return v1, "FROZEN", "THAWED"
    v2 = CGROUP_ROOT / "user.slice" / f"user-{uid}.slice" / "cgroup.freeze"
    if v2.is_file():
        return v2, "1", "0"
    return None


def freeze(uid: int, bound: float = 2.0) -> bool:
    """Freeze the student's group; whether there was one to freeze."""
    found = freeze_file(uid)
    if found is None:
        return False
    path, frozen, _thawed = found
    path.write_text(frozen)
    deadline = time.monotonic() + bound
    while path.name == "freezer.state" and _read(path) == "FREEZING" and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    return True


def thaw(uid: int) -> None:
    found = freeze_file(uid)
    if found is not None:
        found[0].write_text(found[2])


def remove_groups(uid: int) -> None:
    for controller in v1_controllers():
        try:
            os.rmdir(group(controller, uid))
        except OSError:
            pass  # absent, or still holds a process


# -- under systemd ----------------------------------------------------------------------

def dropin(limits: Limits) -> bytes:
    """The user slice's drop-in: the same limits, enforced by systemd."""
    lines = ["[Slice]"]
    if limits.tasks:
        lines.append(f"TasksMax={limits.tasks}")
    if limits.memory_mb:
        lines.append(f"MemoryMax={limits.memory_mb}M")
    if limits.cpu_percent:
        lines.append(f"CPUQuota={limits.cpu_percent}%")
    return ("# wod-backend: students.limits\n" + "\n".join(lines) + "\n").encode()


def dropin_path(systemd_dir: Path, uid: int) -> Path:
    return systemd_dir / f"user-{uid}.slice.d" / DROPIN

