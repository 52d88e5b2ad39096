"""Logging: one line per event on stderr, the full story in `<state_dir>/wod-backend.log`.

Tracebacks go to the log file only: stderr is what procmail and postfix show the
sender, and gets one line. Nothing here ever formats a password or a token: callers
log names and outcomes, never secret values.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from wod_backend.state.files import adopt

LOG_NAME = "wod-backend.log"
_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


class _OneLine(logging.Formatter):
    """Drop tracebacks and keep only the first line of a message."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().splitlines()[0] if record.getMessage() else ""
        return f"wod-backend: {record.levelname.lower()}: {msg}"


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is now (tests swap it), not the one at start-up."""

    wod_stderr = True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def log_to_stderr(verbose: int) -> None:
    root = logging.getLogger("wod_backend")
    if any(isinstance(h, _Stderr) for h in root.handlers):
        return
    handler = _Stderr()
    handler.setFormatter(_OneLine())
    # A record with a traceback is for the log file; cli.dispatch prints its one line.
    handler.addFilter(lambda record: record.exc_info is None)
    handler.setLevel(logging.WARNING if verbose == 0 else
                     logging.INFO if verbose == 1 else logging.DEBUG)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def log_to_state_dir(state_dir: Path) -> None:
    """Add the log file; if the state directory is not writable, stderr has to do."""
    root = logging.getLogger("wod_backend")
    path = state_dir / LOG_NAME
    if any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        return
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        adopt(state_dir)
        adopt(path)
        handler = logging.FileHandler(path, encoding="utf-8")
    except OSError:
        return
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(logging.INFO)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
