"""Files under state_dir: private directories, and what root leaves there.

state_dir belongs to the backend user. Root normally never touches it (cli/switchuser
hands root's commands to its owner); when state_dir is root's own, nothing changes hands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

# The resident worker's socket and pid file (worker/server.py, worker/service.py, worker/handoff.py).
WORKER_SOCKET = "worker.sock"
WORKER_PID = "worker.pid"
LAST_FLUSH = "last-flush"  # touched by each `outbox flush` that ran to its end (metrics)


def pid_alive(pid: Optional[int]) -> bool:
    """Whether the process runs: a zombie (PID 1 here reaps no orphan) does not."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False  # gone meanwhile
    except (OSError, IndexError):
        return True  # no /proc to tell: kill(0) said it exists


def worker_pid(state_dir: Path) -> Optional[int]:
    """The pid of the resident worker of this state_dir, if it runs and listens."""
    try:
        pid = int((state_dir / WORKER_PID).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) and (state_dir / WORKER_SOCKET).is_socket() else None


def adopt(path: Path) -> None:
    """Give what root creates under the state directory to the directory's owner.

    The state belongs to the backend user; an admin running wod-backend as root (history,
    retry, a batch from cron) must not leave files there that the backend user can no
    longer open (a root-owned journal-wal would stop every mail with exit 75)."""
    if os.geteuid() != 0:
        return
    try:
        owner = path.parent.stat()
        st = os.lstat(path)
        if owner.st_uid != 0 and st.st_uid != owner.st_uid:
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
    except OSError:
        pass


def ensure_private_dir(path: Path) -> None:
    """`path` as a real 0700 directory (created if need be); a link in its place is
    refused, never followed, and the mode is changed through a descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    adopt(path)


MAINTENANCE = "maintenance"


def in_maintenance(state_dir: Path) -> bool:
    """`wod-backend maintenance on`: order mails are held (exit 75) until it is off."""
    return os.path.lexists(state_dir / MAINTENANCE)
