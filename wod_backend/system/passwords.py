"""Student passwords: generated with `secrets`, set on Linux accounts through `chpasswd -e`.

The clear password never reaches argv or a log: `chpasswd -e` receives `user:hash` lines
on stdin, hashed here with sha512_crypt (what Debian's PAM verifies). One `chpasswd`
process serves a whole batch of students.
"""

from __future__ import annotations

import secrets
from typing import Iterable

from wod_backend.config import Passwords
from wod_backend.errors import StepFailed
from wod_backend.system.run import run


def generate(policy: Passwords) -> str:
    return "".join(secrets.choice(policy.alphabet) for _ in range(policy.length))


def crypt_hash(password: str) -> str:
    """A sha512_crypt hash ($6$, 5000 rounds: glibc's default, what passwd(1) writes).

    glibc's own crypt(3) through the standard library when this Python still has it (a
    millisecond, no import cost); otherwise passlib (libpass), which writes the same
    format but costs 35 ms of import per process."""
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512, rounds=5000))
    except ImportError:  # Python >= 3.13
        from passlib.hash import sha512_crypt

        return sha512_crypt.using(rounds=5000).hash(password)


def set_linux_passwords(pairs: Iterable[tuple[str, str]]) -> None:
    """Set (user, clear password) pairs; the old passwords stop working at once."""
    lines = "".join(f"{user}:{crypt_hash(pw)}\n" for user, pw in pairs)
    if not lines:
        return
    result = run(["chpasswd", "-e"], input=lines.encode(), timeout=60)
    if not result.ok:
        # chpasswd's output names the user and the line, never the hash.
        raise StepFailed(f"chpasswd failed: {result.tail(3)}")
