"""Root's side of the students' disk budget (`students.limits.disk_mb`; docs/operations.md).

Where the homes' file system has user quotas on, `setup` gives each student a soft
limit of the budget and a hard one of 1.5 times it, and usage is read from the quota
(one `repquota` for everyone). Elsewhere each home is measured by a bounded walk through
directory descriptors (never following a link, each inode once, at most `MAX_ENTRIES`
entries: a larger home is reported as at least what was counted). A student over the
budget finds `WARNING` in their home at once; the sweep evicts one still over at its
next look (lifecycle/disk.py).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.order import Seat
from wod_backend.system import homes
from wod_backend.system.run import run

WARNING = "DISK-BUDGET-WARNING.txt"
MAX_ENTRIES = 200_000
HARD_FACTOR = 1.5


@dataclass(frozen=True)
class Mount:
    point: Path
    device: str
    fstype: str
    options: tuple[str, ...]


def mount_of(path: Path) -> Mount:
    """The mount holding `path` (the longest mount point above it)."""
    best: Optional[Mount] = None
    target = os.path.realpath(path)
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point = fields[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and (
                best is None or len(point) >= len(str(best.point))):
            best = Mount(Path(point), fields[0], fields[2], tuple(fields[3].split(",")))
    assert best is not None  # / is always mounted
    return best


def quota_on(m: Mount) -> Optional[str]:
    """None when user quotas are on for this mount, else why not (setup says it)."""
    if not {"usrquota", "quota", "usrjquota"} & {o.split("=")[0] for o in m.options}:
        return f"{m.point} ({m.fstype}) is mounted without usrquota"
    r = run(["quotaon", "-pu", str(m.point)], timeout=30)
    if "is on" not in r.output:
        return f"user quota is off on {m.point}: {r.tail(1, 120)}"
    return None


def set_quotas(cfg: Config, m: Mount) -> None:
    """Soft = the budget, hard = 1.5 times it, for every student (one setquota)."""
    assert cfg.students.limits.disk_mb is not None
    soft = cfg.students.limits.disk_mb * 1024
    lines = "".join(f"{Seat.of(cfg.students, n).uid} {soft} {int(soft * HARD_FACTOR)} 0 0\n"
                    for n in range(cfg.students.min, cfg.students.max + 1))
    r = run(["setquota", "-b", "-u", str(m.point)], input=lines.encode(), timeout=120)
    if not r.ok:
        raise OSError(f"setquota: {r.tail(2, 200)}")


def repquota(m: Mount) -> dict[int, tuple[int, int, int]]:
    """(KiB used, soft, hard) by uid (`repquota -u -n`: '#UID -- USED SOFT HARD ...')."""
    return parse_repquota(run(["repquota", "-u", "-n", str(m.point)], timeout=60).output)


def parse_repquota(text: str) -> dict[int, tuple[int, int, int]]:
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0].startswith("#") and fields[0][1:].isdigit():
            try:
                out[int(fields[0][1:])] = (int(fields[2].rstrip("*")), int(fields[3]),
                                           int(fields[4]))
            except ValueError:
                continue
    return out


def quotas_to_set(cfg: Config, m: Mount) -> int:
    """How many students' quota limits differ from the budget."""
    assert cfg.students.limits.disk_mb is not None
    soft = cfg.students.limits.disk_mb * 1024
    now = repquota(m)
    return sum(1 for n in range(cfg.students.min, cfg.students.max + 1)
               if now.get(Seat.of(cfg.students, n).uid, (0, 0, 0))[1:] !=
               (soft, int(soft * HARD_FACTOR)))


def scan_usage(home: Path, max_entries: int = MAX_ENTRIES) -> tuple[int, bool]:
    """(bytes allocated under `home`, whether the walk stopped early)."""
    try:
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return 0, False
    seen: set[tuple[int, int]] = set()
    total, entries = 0, 0
    try:
        for _root, dirs, files, dfd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
            for name in dirs + files:
                entries += 1
                if entries > max_entries:
                    return total, True
                try:
                    st = os.lstat(name, dir_fd=dfd)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                    total += st.st_blocks * 512
    except (OSError, RecursionError):
        return total, True
    finally:
        os.close(fd)
    return total, False


def measure(cfg: Config, numbers: list[int]) -> dict[int, dict]:
    """Per student: MB used, whether over the budget, whether the scan stopped early;
    the WARNING file written into (or removed from) each home."""
    budget = cfg.students.limits.disk_mb
    if budget is None:
        return {}
    m = mount_of(cfg.students.home_root)
    by_uid = {uid: kib * 1024 for uid, (kib, _s, _h) in repquota(m).items()} \
        if quota_on(m) is None else None
    out = {}
    for n in numbers:
        seat = Seat.of(cfg.students, n)
        if by_uid is not None:
            used, bounded = by_uid.get(seat.uid, 0), False
        else:
            used, bounded = scan_usage(seat.home)
        mb = used / 2**20
        over = mb > budget
        _warning(cfg, seat, over, mb, budget)
        out[n] = {"mb": round(mb, 1), "over": over, "bounded": bounded}
    return out


def _warning(cfg: Config, seat: Seat, over: bool, mb: float, budget: int) -> None:
    if not seat.home.is_dir():
        return
    uid = seat.uid if cfg.students.manage_accounts else None
    with homes.open_home(seat.home, uid, uid, cfg.students.home_mode) as home:
        if not over:
            if WARNING in home.entries():
                home.remove(WARNING)
            return
        home.write(WARNING, (
            f"Your home uses {mb:.0f} MB, over this workshop's budget of {budget} MB.\n"
            f"Delete what you do not need now (large downloads, datasets, caches):\n"
            f"    du -sh ~/* ~/.[!.]* | sort -h | tail\n"
            f"If you are still over at the next check (a few minutes), your session\n"
            f"ends and this seat's work is kept for the organisers only.\n").encode(), 0o644)
