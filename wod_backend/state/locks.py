"""Locks under state_dir: one per student, one per message, with a bounded wait.

postfix delivers mails in parallel and sometimes twice. Orders for different students
run side by side; orders for the same student take its lock in turn; a lock not had
within the bound is a temporary failure (exit 75: the MTA tries again later). flock
locks die with their process, so a killed order never leaves a student locked.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Iterator

from wod_backend.errors import TemporaryFailure
from wod_backend.order import user_name
from wod_backend.state.files import adopt, ensure_private_dir


class Busy(TemporaryFailure):
    """The lock is held by another process beyond the wait."""


@contextmanager
def hold(path: Path, wait: float, what: str) -> Iterator[None]:
    try:
        ensure_private_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        adopt(path)
    except OSError as exc:
        raise TemporaryFailure(f"lock {path} unusable: {exc.strerror}")
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"{what} is busy with another order "
                                           f"(waited {wait:g}s)")
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def student_lock(state_dir: Path, student: int, wait: float) -> "AbstractContextManager[None]":
    return hold(state_dir / "locks" / f"student-{student}.lock", wait, user_name(student))


def message_key(message_id: str | None, subject: str | None, body_line: str | None) -> str:
    """What makes two deliveries the same message: its Message-ID, else its content."""
    if message_id:
        basis = "id:" + message_id.strip()
    else:
        basis = "content:" + " ".join((subject or "").split()) + "\n" + (body_line or "")
    return hashlib.sha256(basis.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def message_lock(state_dir: Path, key: str, wait: float) -> "AbstractContextManager[None]":
    # 256 buckets: lock files never pile up; two messages sharing one wait a moment.
    return hold(state_dir / "locks" / f"message-{key[:2]}.lock", wait, "this message")
