"""The one error hierarchy of wod-backend, and the sysexits code each error maps to.

procmail hands our exit code to postfix: only 75 (EX_TEMPFAIL) makes postfix retry a
mail; any other non-zero code bounces it. The CLI turns these into a one-line message and
an exit code in one place (cli.dispatch).
"""

from __future__ import annotations

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class WodError(Exception):
    """Base class: a failure with a one-line reason for the operator."""

    exit_code = EX_SOFTWARE

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class UsageError(WodError):
    """The command line itself is wrong."""

    exit_code = EX_USAGE


class BadOrder(WodError):
    """The order is malformed or asks for something that cannot be (bounce it)."""

    exit_code = EX_DATAERR


class TemporaryFailure(WodError):
    """Something outside us is not ready yet; the same order may work later (retry)."""

    exit_code = EX_TEMPFAIL


class Refused(WodError):
    """The order is well formed but its sender may not give it."""

    exit_code = EX_NOPERM


class ConfigError(WodError):
    """The configuration or the content tree is wrong: an operator must fix it."""

    exit_code = EX_CONFIG


class StepFailed(WodError):
    """A step of an order failed on the system; the order can be retried."""

    exit_code = EX_SOFTWARE


class SendError(Exception):
    """A call to an outside service (frontend, hub) did not go through; `temporary`
    says whether trying later may help. The outbox keeps temporary ones."""

    def __init__(self, message: str, status: "int | None" = None, temporary: bool = True):
        super().__init__(message)
        self.status = status
        self.temporary = temporary


class SwitchUser(Exception):
    """Not a failure: this root process must run the command as state_dir's owner
    (privileged/switchuser.py); cli.dispatch does it and exits with that run's code."""

    def __init__(self, uid: int, gid: int, config: object):
        super().__init__(uid)
        self.uid, self.gid, self.config = uid, gid, config
