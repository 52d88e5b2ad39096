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

import logging
import subprocess
import sys
import time

from wod_backend.config import Config
from wod_backend.logs import log_to_state_dir

log = logging.getLogger(__name__)

# Pauses between the confirmation's own attempts at a failed call (then: outbox flush).
RETRY_PAUSES = (1.0, 3.0)


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


def hand_over(cfg: Config, entry: int, keys: set[str]) -> None:
    """Confirm `keys` in a detached process and return at once. A fresh interpreter,
    not a fork of this one: SQLite's lock bookkeeping does not survive fork(). It
    holds none of this process's descriptors (locks, pipes, the MTA's stdout), so
    neither procmail nor a second delivery of the mail waits for it."""
    if not keys or cfg.path is None:
        return
    # -P: nothing from the working directory on sys.path (the backend user's cwd).
    argv = [sys.executable, "-P", "-m", __name__, str(cfg.path), str(entry), *sorted(keys)]
    subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, cwd="/", start_new_session=True)


def main(argv: list[str]) -> int:
    """`python -m wod_backend.execution.confirm CONFIG ORDER KEY...` (hand_over's)."""
    from wod_backend import config

    cfg = config.load(argv[0])
    log_to_state_dir(cfg.state_dir)
    try:
        confirm(cfg, int(argv[1]), set(argv[2:]))
    except Exception:  # nobody to tell but the log: the outbox keeps the calls
        log.exception("hub confirmation for order %s", argv[1])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
