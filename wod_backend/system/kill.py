"""Ending a student's processes: matched by uid from /proc, never by command text.

The reference's `grep /student1` also hit student10 to student19. Here a process
belongs to a student when any of its real, effective or saved uids is the student's.
TERM first, then KILL what is left after a grace period: inside the student's frozen
cgroup when there is one (system/limits.py), then again until none is left.
"""

from __future__ import annotations

import os
import signal
import time

from wod_backend.errors import StepFailed
from wod_backend.system import limits


def pids_of(uid: int) -> list[int]:
    return pids_by_uid({uid}).get(uid, [])


def pids_by_uid(uids: set[int]) -> dict[int, list[int]]:
    """The live processes of each of `uids` (real, effective or saved uid), from one
    pass over /proc."""
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as fh:
                for line in fh:
                    if line.startswith(b"State:") and b"Z" in line.split()[1]:
                        break  # a zombie: already dead, only waits for its parent
                    if line.startswith(b"Uid:"):
                        for uid in {int(x) for x in line.split()[1:4]} & uids:
                            found.setdefault(uid, []).append(int(entry))
                        break
        except (OSError, ValueError):
            continue  # gone meanwhile
    return found


def signal_all_as(uid: int, sig: int) -> None:
    """Send `sig` to every process of `uid` at once: kill(-1) from a child that became
    `uid`. The kernel delivers it to all of them in one walk of the process table, with
    forks held off, so a process that forks and exits every few ms cannot slip through
    between a scan of /proc and the signal (our own child is spared, then exits)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, sig)
        except BaseException:
            os._exit(1)
        os._exit(0)
    os.waitpid(pid, 0)


def kill_user_processes(uid: int, grace: float = 3.0, bound: float = 10.0) -> int:
    """End every process of uid: TERM, up to `grace` seconds, then KILL until none is
    left (within `bound` seconds); returns how many there were at first."""
    if uid < 1000:
        raise ValueError(f"refusing to kill processes of system uid {uid}")
    first = pids_of(uid)
    if not first:
        return 0
    can_setuid = os.geteuid() == 0
    if can_setuid:
        signal_all_as(uid, signal.SIGTERM)
    else:
        _signal_each(pids_of(uid), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = pids_of(uid)
    if can_setuid and left:
        _freeze_and_kill(uid, left)
    deadline = time.monotonic() + bound
    while pids_of(uid):
        if time.monotonic() >= deadline:
            raise StepFailed(f"processes of uid {uid} still alive after {bound:g}s of "
                             f"SIGKILL: {pids_of(uid)[:5]}")
        if can_setuid:
            signal_all_as(uid, signal.SIGKILL)
        else:
            _signal_each(pids_of(uid), signal.SIGKILL)
        time.sleep(0.02)
    return len(first)


def _freeze_and_kill(uid: int, pids: list[int]) -> None:
    """With the student's freezer group (system/limits.py): everything of the uid moved
    into it, frozen (nothing of it runs, so nothing forks), killed, thawed (the kills
    take effect). Without one, the KILL loop below does it alone."""
    if limits.freeze_file(uid) is None:
        return
    limits.place(uid, pids)
    if not limits.freeze(uid):
        return
    try:
        signal_all_as(uid, signal.SIGKILL)
    finally:
        limits.thaw(uid)


def _signal_each(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
