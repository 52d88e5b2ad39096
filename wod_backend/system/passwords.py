"""Student passwords: generated with `secrets`, set on Linux accounts through `chpasswd`.

The clear password never reaches argv or a log: `chpasswd` receives `user:password`
lines on stdin and hashes them itself with sha512_crypt at glibc's default 5,000 rounds
(what Debian's PAM verifies, and what passwd(1) wrote before yescrypt). No hashing
library in the process: the standard library's `crypt` is gone in Python 3.13, and
passlib's import cost 35 ms per mail. One `chpasswd` process serves a whole batch.
"""

from __future__ import annotations

import secrets
from typing import Iterable

from wod_backend.config import Passwords
from wod_backend.errors import StepFailed
from wod_backend.system.run import run

CHPASSWD = ("chpasswd", "--crypt-method", "SHA512", "--sha-rounds", "5000")


def generate(policy: Passwords) -> str:
    return "".join(secrets.choice(policy.alphabet) for _ in range(policy.length))


def set_linux_passwords(pairs: Iterable[tuple[str, str]]) -> None:
    """Set (user, clear password) pairs; the old passwords stop working at once."""
    lines = "".join(f"{user}:{pw}\n" for user, pw in pairs)
    if not lines:
        return
    result = run(CHPASSWD, input=lines.encode(), timeout=60)
    if not result.ok:
        # chpasswd's output names the user and the line, never the password.
        raise StepFailed(f"chpasswd failed: {result.tail(3)}")
