"""The durable outbox: every report to the frontend and every hub call, written first.

An item is committed to SQLite (WAL, in the journal's database under state_dir) before
it is sent, so a crash or a kill -9 at any point loses nothing: an item sent but not yet
marked is sent again, which is harmless since every call is idempotent (PUT of a value,
hub calls whose repeats are no-ops). Items of one key (a student, a customer, a hub
user) are sent strictly in the order they were written, never past a pending older one,
so a state never goes backwards. Sending one key holds a per-key file lock, so two
processes never interleave the same key and orders for different students never wait
for each other. A password leaves the outbox once it is delivered.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional


log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id INTEGER,
    created REAL NOT NULL,
    service TEXT NOT NULL,      -- frontend | hub
    key TEXT NOT NULL,          -- ordering key: student:DBID, customer:ID, hub:USER...
    method TEXT NOT NULL,       -- PUT | ensure_user | start | stop
    path TEXT NOT NULL,
    body TEXT,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending | sent | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_try REAL,
    sent REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(status, key, id);
"""

PENDING, SENT, DEAD = "pending", "sent", "dead"
KEY_LOCK_WAIT = 300.0
SECRET_KEYS = ("password",)


@dataclass(frozen=True)
class Item:
    id: int
    order_id: Optional[int]
    created: float
    service: str
    key: str
    method: str
    path: str
    body: Optional[dict]
    status: str
    attempts: int
    last_error: Optional[str]

    def shown(self) -> dict[str, Any]:
        """For listings: the item with secrets masked."""
        body = {k: ("***" if k in SECRET_KEYS else v) for k, v in (self.body or {}).items()}
        return {"id": self.id, "order": self.order_id, "service": self.service,
                "key": self.key, "call": f"{self.method} {self.path}", "body": body,
                "status": self.status, "attempts": self.attempts,
                "last_error": self.last_error, "created": self.created}


@dataclass
class FlushReport:
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[int]]:
        return {"sent": self.sent, "failed": self.failed, "dead": self.dead}


Sender = Callable[[Item], Any]

_COLS = ("id, order_id, created, service, key, method, path, body, status, attempts, "
         "last_error")


def _item(row: tuple) -> Item:
    (id_, order_id, created, service, key, method, path, body, status, attempts,
     last_error) = row
    return Item(id_, order_id, created, service, key, method, path,
                json.loads(body) if body else None, status, attempts, last_error)


class Outbox:
    def __init__(self, conn: Any, state_dir: Path):
        self.conn = conn
        self.lock_dir = state_dir / "locks"  # the schema comes with the journal

    def enqueue(self, order_id: Optional[int], service: str, key: str, method: str,
                path: str, body: Optional[dict] = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO outbox (order_id, created, service, key, method, path, body) "
            "VALUES (?,?,?,?,?,?,?)",
            (order_id, time.time(), service, key, method, path,
             json.dumps(body) if body is not None else None))
        return int(cur.lastrowid)

    def items(self, status: Optional[str] = PENDING, keys: Optional[set[str]] = None,
              order_id: Optional[int] = None, limit: int = -1) -> list[Item]:
        where, args = [], []
        if status is not None:
            where.append("status=?")
            args.append(status)
        if order_id is not None:
            where.append("order_id=?")
            args.append(order_id)
        sql = f"SELECT {_COLS} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = [_item(r) for r in self.conn.execute(sql + " ORDER BY id LIMIT ?",
                                                    (*args, limit))]
        return [r for r in rows if keys is None or r.key in keys]

    def count_pending(self, order_id: int) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM outbox WHERE order_id=? AND "
                                 "status='pending'", (order_id,)).fetchone()[0]

    def _key_lock(self, key: str):  # type: ignore[no-untyped-def]
        from wod_backend.state.locks import hold

        name = "outbox-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        # Another process sending this key answers within its HTTP timeouts.
        return hold(self.lock_dir / name, KEY_LOCK_WAIT, f"outbox key {key}")

    def _mark(self, item: Item, status: str, error: Optional[str] = None) -> None:
        if status == SENT:
            body = None if item.body is None else json.dumps(
                {k: v for k, v in item.body.items() if k not in SECRET_KEYS})
            self.conn.execute("UPDATE outbox SET status=?, sent=?, body=?, "
                              "attempts=attempts+1, last_try=?, last_error=NULL WHERE id=?",
                              (SENT, time.time(), body, time.time(), item.id))
        else:
            self.conn.execute("UPDATE outbox SET status=?, attempts=attempts+1, "
                              "last_try=?, last_error=? WHERE id=?",
                              (status, time.time(), error, item.id))

    def flush(self, send: Sender, keys: Optional[set[str]] = None) -> FlushReport:
        """Send pending items in order per key; a key stops at its first failure."""
        from wod_backend.remote.http import HttpError  # only when something is sent

        report = FlushReport()
        by_key: dict[str, None] = {}
        for item in self.items(PENDING, keys):
            by_key.setdefault(item.key)
        for key in by_key:
            with self._key_lock(key):
                # Re-read under the lock: another process may have sent some meanwhile.
                for item in self.items(PENDING, {key}):
                    try:
                        send(item)
                    except HttpError as exc:
                        if exc.temporary:
                            self._mark(item, PENDING, str(exc))
                            report.failed.append(item.id)
                            break  # later items of this key wait for this one
                        self._mark(item, DEAD, str(exc))
                        report.dead.append(item.id)
                    except ValueError as exc:
                        self._mark(item, DEAD, str(exc))
                        report.dead.append(item.id)
                    else:
                        self._mark(item, SENT)
                        report.sent.append(item.id)
        return report

    def requeue_dead(self, ids: Optional[list[int]] = None) -> int:
        sql = "UPDATE outbox SET status='pending' WHERE status='dead'"
        if ids:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
        return self.conn.execute(sql, tuple(ids or ())).rowcount
