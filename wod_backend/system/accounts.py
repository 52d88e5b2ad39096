"""Student Linux accounts: `studentN`, uid = gid = uid_base + N, home under home_root.

Batch first: `ensure` checks every account of a range against the user and group
databases in-process, then creates all the missing ones with a single `newusers` run
and locks their passwords with a single `chpasswd -e` (the reference spawned several
processes per user and took hours for 2,000 students). Removal uses `userdel`, one per
account: it is rare, and userdel knows every database it must update.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import secrets
from dataclasses import dataclass, field
from typing import Iterable, Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError, StepFailed
from wod_backend.order import Seat, user_name
from wod_backend.system.homes import remove_entry
from wod_backend.system.kill import kill_user_processes
from wod_backend.system.run import run

log = logging.getLogger(__name__)


@dataclass
class AccountsReport:
    created: list[int] = field(default_factory=list)
    present: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    absent: list[int] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def ids_for(cfg: Config, n: int) -> tuple[int, int]:
    uid = Seat.of(cfg.students, n).uid
    return uid, uid


def account_ids(cfg: Config, n: int) -> tuple[int, int]:
    """(uid, gid) of an existing student account, checked against the configuration."""
    name = user_name(n)
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise StepFailed(f"no Linux account {name}: run `wod-backend students ensure {n}`")
    if (pw.pw_uid, pw.pw_gid) != ids_for(cfg, n):
        raise StepFailed(f"account {name} has uid/gid {pw.pw_uid}/{pw.pw_gid}, configured "
                         f"{ids_for(cfg, n)[0]}: fix it by hand")
    return pw.pw_uid, pw.pw_gid


def _conflict(cfg: Config, n: int, users: dict, uids: dict, groups: dict,
              gids: dict) -> Optional[str]:
    name, (uid, gid) = user_name(n), ids_for(cfg, n)
    if name in users and users[name].pw_uid != uid:
        return f"{name} exists with uid {users[name].pw_uid}, expected {uid}"
    if uid in uids and uids[uid] != name:
        return f"uid {uid} for {name} is taken by {uids[uid]}"
    if name in groups and groups[name] != gid:
        return f"group {name} exists with gid {groups[name]}, expected {gid}"
    if gid in gids and gids[gid] != name:
        return f"gid {gid} for {name} is taken by group {gids[gid]}"
    return None


def ensure(cfg: Config, numbers: Iterable[int]) -> AccountsReport:
    """Create the missing accounts of `numbers`; report those that clash."""
    s = cfg.students
    users = {p.pw_name: p for p in pwd.getpwall()}
    uids = {p.pw_uid: p.pw_name for p in users.values()}
    groups = {g.gr_name: g.gr_gid for g in grp.getgrall()}
    gids = {gid: name for name, gid in groups.items()}
    report = AccountsReport()
    lines = []
    for n in numbers:
        problem = _conflict(cfg, n, users, uids, groups, gids)
        if problem:
            report.conflicts.append(problem)
        elif user_name(n) in users:
            report.present.append(n)
        else:
            uid, gid = ids_for(cfg, n)
            # A random throw-away password: newusers insists on hashing one; it is
            # replaced by a locked one below and by a real one at CREATE.
            seat = Seat.of(s, n)
            lines.append(f"{seat.user}:{secrets.token_urlsafe(24)}:{uid}:{gid}:"
                         f"wod-backend student {n}:{seat.home}:{s.shell}\n")
            report.created.append(n)
    if not lines:
        return report
    s.home_root.mkdir(parents=True, exist_ok=True)
    os.chmod(s.home_root, 0o755)
    # -r: no subordinate uid/gid ranges (/etc/subuid). Students need none (they only
    # serve rootless containers), and at 65,536 ids each Debian's default pool runs
    # out near 9,000 accounts ("Can't get unique subordinate GID range"). The uids are
    # given: -r changes nothing else of the account.
    result = run(["newusers", "-r"], input="".join(lines).encode(), timeout=1800)
    if not result.ok:
        raise StepFailed(f"newusers failed ({result.describe()}): {result.tail(3)}")
    locked = "".join(f"{user_name(n)}:!\n" for n in report.created)
    result = run(["chpasswd", "-e"], input=locked.encode(), timeout=600)
    if not result.ok:
        raise StepFailed(f"chpasswd failed: {result.tail(3)}")
    for n in report.created:
        home = Seat.of(s, n).home
        try:
            os.chmod(home, s.home_mode, follow_symlinks=False)
        except OSError as exc:
            raise StepFailed(f"cannot set the mode of {home}: {exc.strerror}")
    log.info("created %d student accounts", len(report.created))
    return report


def missing(cfg: Config, numbers: Iterable[int]) -> list[int]:
    """The student numbers that have no account yet."""
    out = []
    for n in numbers:
        try:
            pwd.getpwnam(user_name(n))
        except KeyError:
            out.append(n)
    return out


def remove(cfg: Config, numbers: Iterable[int]) -> AccountsReport:
    """Remove accounts (processes ended, home deleted without following links)."""
    report = AccountsReport()
    for n in numbers:
        name = user_name(n)
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            report.absent.append(n)
            continue
        if pw.pw_uid != ids_for(cfg, n)[0]:
            report.conflicts.append(f"{name} has uid {pw.pw_uid}: not ours, left alone")
            continue
        kill_user_processes(pw.pw_uid, cfg.students.kill_grace_seconds)
        result = run(["userdel", name], timeout=120)
        if not result.ok:
            report.conflicts.append(f"userdel {name}: {result.tail(2)}")
            continue
        home = Seat.of(cfg.students, n).home
        fd = os.open(cfg.students.home_root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            remove_entry(fd, home.name)
        finally:
            os.close(fd)
        report.removed.append(n)
    return report


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ConfigError(f"{what} needs root (students.manage_accounts is on)")

