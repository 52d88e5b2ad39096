"""`outbox list` and `outbox flush`: what waits to be sent, and sending it (cron)."""

from __future__ import annotations

import time
from typing import Any

from wod_backend.config import Config
from wod_backend.execution.reporting import make_sender
from wod_backend.remote.clients import Clients
from wod_backend.state.files import LAST_FLUSH
from wod_backend.state.journal import Journal
from wod_backend.state.outbox import FlushReport, Outbox


def _outbox(cfg: Config) -> Outbox:
    return Outbox(Journal(cfg.state_dir).conn, cfg.state_dir)


def items(cfg: Config, show_all: bool, limit: int) -> list[dict[str, Any]]:
    return [i.shown() for i in _outbox(cfg).items(None if show_all else "pending",
                                                    limit=limit)]


def flush(cfg: Config, retry_dead: bool) -> FlushReport:
    """Send what is queued (with retries: cron has the time), hub calls confirmed
    (a spawn waited for), then drop the delivered items older than
    `orders.keep_sent_days`."""
    outbox = _outbox(cfg)
    if retry_dead:
        outbox.requeue_dead()
    # A key held by another process is being sent by it (an order, or a background
    # hub confirmation waiting for a spawn): left to it rather than waited for.
    report = outbox.flush(make_sender(cfg, Clients(cfg, patient=True)), wait=1.0)
    outbox.prune_sent(cfg.orders.keep_sent_days)
    if cfg.journal.keep_days is not None:  # retention of participants' data
        Journal(cfg.state_dir).forget_personal(time.time() - cfg.journal.keep_days * 86400)
    # `metrics` reports when a flush last ran to its end.
    (cfg.state_dir / LAST_FLUSH).touch()
    return report
