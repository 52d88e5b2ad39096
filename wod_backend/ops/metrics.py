"""`wod-backend metrics`: the backend's state in Prometheus' text exposition format
(version 0.0.4, what node_exporter's textfile collector reads; not OpenMetrics).

`metrics --textfile DIR` writes `DIR/wod_backend.prom` atomically (a temporary file
renamed over it), which the schedule does every minute when `schedule.metrics_dir` is
set. Every figure comes from the journal and the outbox (state/stats.py), so it
counts what the backend did, whichever process did it. README "Monitoring" lists the
series and two alert rules.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from wod_backend.config import Config
from wod_backend.state import stats
from wod_backend.state.stats import reason_class
from wod_backend.state.files import LAST_FLUSH, worker_pid

if TYPE_CHECKING:
    import sqlite3
from wod_backend.state import journal as jr

BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, doc: str,
               samples: Iterable[tuple[str, dict, float]]) -> None:
        self.lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}"]
        for suffix, labels, value in samples:
            self.lines.append(f"{name}{suffix}{_labels(**labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() \
        else str(int(value))


def collect(cfg: Config, now: float) -> str:
    journal = jr.Journal(cfg.state_dir)
    conn = journal.conn
    out = Exposition()
    out.family("wod_orders_total", "counter", "Orders journaled, by action and outcome.",
               [("", {"action": a, "outcome": o}, c)
                for a, o, c in stats.orders_by_outcome(conn)])
    hist: list[tuple[str, dict, float]] = []
    for action, (counts, total, n) in sorted(stats.durations(conn, BUCKETS).items()):
        hist += [("_bucket", {"action": action, "le": _number(edge)}, c)
                 for edge, c in zip(BUCKETS, counts)]
        hist += [("_bucket", {"action": action, "le": "+Inf"}, n),
                 ("_sum", {"action": action}, total), ("_count", {"action": action}, n)]
    out.family("wod_order_duration_seconds", "histogram",
               "How long finished orders ran, mail in to outcome.", hist)
    refused: dict[str, int] = {}
    for reason, count in stats.refused_reasons(conn):
        refused[reason_class(reason)] = refused.get(reason_class(reason), 0) + count
    out.family("wod_orders_refused_total", "counter", "Orders refused, by reason.",
               [("", {"reason": r}, c) for r, c in sorted(refused.items())])
    out.family("wod_orders_failed_recent", "gauge", "Orders failed in the last 15 minutes.",
               [("", {}, stats.failed_since(conn, now - 900))])
    _outbox(out, conn, now, cfg)
    out.family("wod_seats_in_use", "gauge", "Students assigned, per workshop.",
               [("", {"workshop": w}, c) for w, c in sorted(seats(cfg, journal).items())])
    if cfg.mail.worker and cfg.mail.backend_user:
        out.family("wod_worker_up", "gauge", "1 while the resident worker runs; 0: every "
                   "mail pays a whole start-up until the schedule restarts it.",
                   [("", {}, 1 if worker_pid(cfg.state_dir) else 0)])
    if cfg.jupyterhub is not None and cfg.jupyterhub.manage:
        from wod_backend.ops import bans

        out.family("wod_hub_banned_addresses", "gauge", "Addresses refused by the hub "
                   "after repeated failed logins (jupyterhub.login_failures).",
                   [("", {}, len(bans.current(cfg, now)))])
    out.family("wod_hub_failed_attempts_total", "counter",
               "Hub calls (spawns, stops) tried and failed.",
               [("", {}, stats.hub_failed_attempts(conn))])
    out.family("wod_sweep_evictions_total", "counter", "Students evicted by sweep.",
               [("", {}, stats.by_source(conn, "sweep", "EVICT"))])
    out.family("wod_expired_total", "counter", "CLEANUPs ordered by expire.",
               [("", {}, stats.by_source(conn, "expire", "CLEANUP"))])
    return out.text()


def _outbox(out: Exposition, conn: "sqlite3.Connection", now: float, cfg: Config) -> None:
    depth = stats.outbox_depth(conn)
    out.family("wod_outbox_items", "gauge", "Outbox items not sent, by service and status.",
               [("", {"service": s, "status": st}, c) for s, st, c, _ in depth])
    oldest = {s: now - created for s, st, _c, created in depth if st == "pending"}
    out.family("wod_outbox_oldest_pending_age_seconds", "gauge",
               "Age of the oldest pending outbox item, by service (0: none pending).",
               [("", {"service": s}, round(oldest.get(s, 0.0), 3))
                for s in ("frontend", "hub")])
    try:
        last = (cfg.state_dir / LAST_FLUSH).stat().st_mtime
    except OSError:
        last = 0.0
    out.family("wod_outbox_last_flush_timestamp_seconds", "gauge",
               "When `outbox flush` last ran to its end (0: never).", [("", {}, round(last))])


def seats(cfg: Config, journal: jr.Journal) -> dict[str, int]:
    from wod_backend.state.seats import FINISHED, holds_seat
    from wod_backend.planning.catalog import Catalog

    catalog = Catalog(cfg)
    count: dict[str, int] = {}
    last = journal.last_orders(range(cfg.students.min, cfg.students.max + 1))
    for e in last.values():
        if holds_seat(catalog, e, FINISHED) and e.workshop:
            count[e.workshop] = count.get(e.workshop, 0) + 1
    return count


def write_textfile(cfg: Config, directory: Path) -> Path:
    """The exposition into DIR/wod_backend.prom, atomically (the collector never reads
    half a file)."""
    text = collect(cfg, time.time())
    fd, tmp = tempfile.mkstemp(prefix=".wod_backend.", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    target = directory / "wod_backend.prom"
    os.replace(tmp, target)
    return target
