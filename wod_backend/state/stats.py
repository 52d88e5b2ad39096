"""Counts over the journal and the outbox for `metrics` (ops/metrics.py): each one
indexed or one pass over a table, so that a scrape every minute stays cheap at any
journal size."""

from __future__ import annotations

import re
import sqlite3
from typing import Iterable


def orders_by_outcome(conn: sqlite3.Connection) -> list[tuple[str, str, int]]:
    """(action, outcome, count); an order refused before it was understood has action
    'unknown'."""
    return [(a or "unknown", o, c) for a, o, c in conn.execute(
        "SELECT action, outcome, COUNT(*) FROM orders GROUP BY action, outcome")]


def durations(conn: sqlite3.Connection, buckets: Iterable[float]
              ) -> dict[str, tuple[list[int], float, int]]:
    """Per action of finished orders: (cumulative counts per bucket, sum, count)."""
    edges = list(buckets)
    le = ", ".join("SUM(duration <= ?)" for _ in edges)
    rows = conn.execute(
        f"SELECT action, COUNT(*), SUM(duration), {le} FROM orders WHERE duration IS NOT "
        f"NULL AND action IS NOT NULL AND outcome IN ('done', 'done, reports pending', "
        f"'failed') GROUP BY action", edges)
    return {action: ([int(c or 0) for c in counts], float(total), int(n))
            for action, n, total, *counts in rows}


def refused_reasons(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return list(conn.execute("SELECT COALESCE(reason, ''), COUNT(*) FROM orders WHERE "
                             "outcome='refused' GROUP BY reason"))


def reason_class(reason: str) -> str:
    """A refusal's reason without its particulars (numbers, quoted values), so that
    the label has few values: 'student 512 out of range 1..100' -> 'student N out of
    range N..N'; the intake policy's reasons keep what was refused ('policy: unsigned
    order (no X-WoD-Signature header)')."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'...'", reason)
    text = re.sub(r"\d+", "N", text)
    parts = [p.strip() for p in text.split(":")]
    head = ": ".join(parts[:2]) if parts[0] == "policy" and len(parts) > 1 else parts[0]
    return head[:80] or "unknown"


def refused_since(conn: sqlite3.Connection, since: float) -> dict[str, int]:
    """Refusals of mails received since `since`, by reason class."""
    out: dict[str, int] = {}
    for (reason,) in conn.execute("SELECT COALESCE(reason, '') FROM orders WHERE "
                                  "outcome='refused' AND received >= ?", (since,)):
        out[reason_class(reason)] = out.get(reason_class(reason), 0) + 1
    return out


def recent_mail_outcomes(conn: sqlite3.Connection, since: float, limit: int = 20
                         ) -> list[tuple[str, str]]:
    """(outcome, reason class) of the latest mails received since `since`, newest
    first; probes left out."""
    return [(o, reason_class(r or "")) for o, r in conn.execute(
        "SELECT outcome, reason FROM orders WHERE source='mail' AND received >= ? "
        "ORDER BY id DESC LIMIT ?", (since, limit))]


def probe_seen(conn: sqlite3.Connection, subject: str) -> bool:
    return conn.execute("SELECT 1 FROM orders WHERE source='probe' AND subject=? LIMIT 1",
                        (subject,)).fetchone() is not None


def by_source(conn: sqlite3.Connection, source: str, action: str) -> int:
    return conn.execute("SELECT COUNT(*) FROM orders WHERE source=? AND action=?",
                        (source, action)).fetchone()[0]


def failed_since(conn: sqlite3.Connection, since: float) -> int:
    return conn.execute("SELECT COUNT(*) FROM orders WHERE outcome='failed' AND "
                        "received >= ?", (since,)).fetchone()[0]


def outbox_depth(conn: sqlite3.Connection) -> list[tuple[str, str, int, float]]:
    """(service, status, count, oldest created) of items not sent."""
    return list(conn.execute("SELECT service, status, COUNT(*), MIN(created) FROM outbox "
                             "WHERE status != 'sent' GROUP BY service, status"))


def hub_failed_attempts(conn: sqlite3.Connection) -> int:
    """Hub calls tried and failed: every attempt of a call not sent, all but the last
    of one sent."""
    row = conn.execute("SELECT COALESCE(SUM(CASE WHEN status='sent' THEN attempts - 1 "
                       "ELSE attempts END), 0) FROM outbox WHERE service='hub' AND "
                       "attempts > 0").fetchone()
    return int(row[0])
