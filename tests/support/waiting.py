"""Waiting in tests for what the product does in the background (a spawn, a flush)."""

from __future__ import annotations

import time
from typing import Callable


def wait_for(what: str, predicate: Callable[[], object], bound: float = 60,
             step: float = 0.1) -> None:
    """Return once `predicate()` is true; fail naming `what` after `bound` seconds."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")
