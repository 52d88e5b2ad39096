"""Hub calls confirmed in the background: no order waits for the hub.

JupyterHub holds a start call until the spawn ends (or its `slow_spawn_timeout`), and
procmail and one of postfix's delivery slots would wait with the order. So an order
only writes its hub calls to the outbox (reporting.Services.hub) and, once its journal
entry has its outcome, hands their keys to a detached process (a lean interpreter: the
configuration, the outbox and the hub client), which outlives the order: it sends them in
order under the outbox's per-key lock, waits for the spawn through the hub's progress
stream (readiness is known as it happens, not at the next flush), tries a failed
spawn again, and writes what became of it into the order's journal log. What it could
not do stays in the outbox for `outbox flush`; a call that keeps failing goes dead
after `jupyterhub.spawn_attempts` and shows in `status`. A later order's calls for the
same student wait behind it on the key lock, so a student's server ends in the state
of the student's last order.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, Optional

from wod_backend.config import Config
from wod_backend.logs import log_to_state_dir

if TYPE_CHECKING:
    from wod_backend.state.journal import Journal

log = logging.getLogger(__name__)

# Pauses between the confirmation's own attempts at a failed call (then: outbox flush).
RETRY_PAUSES = (1.0, 3.0)
# While other orders received within this many seconds still run (a burst of
# registrations), hub calls wait, up to HOLD_MAX seconds: a spawn costs the hub more
# CPU than a whole order (about 1.5 s against 0.3 s for a CREATE, measured with the
# mocksu stand-in), and on a small machine spawning during a burst delays every
# student's password. JupyterHub spawns a server at login anyway.
HOLD_RECENT = 60.0
HOLD_MAX = 20.0


def hold(journal: "Journal", entry: int) -> float:
    """Wait while other recent orders run (at most HOLD_MAX); the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < HOLD_MAX and \
            journal.active(time.time() - HOLD_RECENT, exclude=entry):
        time.sleep(0.2)
    return time.monotonic() - started


def confirm(cfg: Config, entry: int, keys: set[str]) -> None:
    """Send the hub calls of `keys`, in order, retrying failures a few times."""
    from wod_backend.execution.reporting import make_sender
    from wod_backend.remote.clients import Clients
    from wod_backend.state.journal import Journal
    from wod_backend.state.outbox import Outbox

    journal = Journal(cfg.state_dir)
    outbox = Outbox(journal.conn, cfg.state_dir)
    send = make_sender(cfg, Clients(cfg))
    started = time.monotonic()
    left = set(keys)
    # Only a spawn costs the hub the CPU a burst's orders need; a stop frees the seat
    # and its server's memory, and five CLEANUPs at once would each wait for the others.
    if any(item.method == "start" for item in outbox.items(keys=left)):
        held = hold(journal, entry)
        if held >= 0.2:
            journal.log(entry, f"hub: calls held {held:.1f}s while other orders ran")
    for pause in (*RETRY_PAUSES, None):
        report = outbox.flush(send, left)
        failed = {i.key for i in outbox.items(None, left) if i.id in report.failed}
        for item in outbox.items(None, left, order_id=entry):
            if item.id in report.sent:
                journal.log(entry, f"hub: {item.method} {item.path} confirmed "
                                   f"({time.monotonic() - started:.3f}s after the order)")
            elif item.id in report.failed or item.id in report.dead:
                journal.log(entry, f"hub: {item.method} {item.path} not confirmed: "
                                   f"{item.last_error}")
        left = failed
        if not left or pause is None:
            break
        time.sleep(pause)


# Set in a resident worker's child (worker/server.py): where to ask the worker for the
# confirmation instead of starting an interpreter.
_channel: Optional[int] = None


def use_channel(fd: int) -> None:
    global _channel
    _channel = fd


def hand_over(cfg: Config, entry: int, keys: set[str]) -> None:
    """Confirm `keys` in a detached process and return at once: a fork of the resident
    worker when this order runs in one (asked over its pipe), else a fresh interpreter
    (not a fork of this process: SQLite's lock bookkeeping does not survive fork()).
    It holds none of this process's descriptors (locks, pipes, the MTA's stdout), so
    neither procmail nor a second delivery of the mail waits for it."""
    if not keys or cfg.path is None:
        return
    if _channel is not None:
        request = json.dumps({"entry": entry, "keys": sorted(keys)}).encode() + b"\n"
        try:
            with os.fdopen(os.dup(_channel), "wb") as pipe:
                pipe.write(request)
            return
        except OSError:  # the worker is gone: start one here
            pass
    # -P: nothing from the working directory on sys.path (the backend user's cwd).
    argv = [sys.executable, "-P", "-m", __name__, str(cfg.path), str(entry), *sorted(keys)]
    from wod_backend.system.run import start

    start(argv)


def run_here(cfg: Config, entry: int, keys: set[str]) -> int:
    """The confirmation in this process (a detached interpreter or a worker's fork)."""
    try:
        confirm(cfg, entry, keys)
    except Exception:  # nobody to tell but the log: the outbox keeps the calls
        log.exception("hub confirmation for order %s", entry)
        return 1
    return 0


def main(argv: list[str]) -> int:
    """`python -m wod_backend.execution.confirm CONFIG ORDER KEY...` (hand_over's)."""
    from wod_backend import config

    cfg = config.load(argv[0])
    log_to_state_dir(cfg.state_dir)
    return run_here(cfg, int(argv[1]), set(argv[2:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
