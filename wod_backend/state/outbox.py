"""The durable outbox: every report to the frontend and every hub call, written first.

An item is committed to SQLite (WAL, in the journal's database under state_dir) before
it is sent, so a crash or a kill -9 at any point loses nothing: an item sent but not yet
marked is sent again, which is harmless since every call is idempotent (PUT of a value,
hub calls whose repeats are no-ops). Items of one key (a student, a customer, a hub
user) are sent strictly in the order they were written, never past a pending older one,
so a state never goes backwards. Sending one key holds a per-key file lock, so two
processes never interleave the same key and orders for different students never wait
for each other. A password leaves the outbox once it is delivered, and delivered items
leave it `keep_sent_days` later (failed and pending ones stay until sent or flushed).
"""

from __future__ import annotations

import contextlib
import sqlite3
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from wod_backend.errors import SendError
from wod_backend.state.locks import Busy, hold

log = logging.getLogger(__name__)

PENDING, SENT, DEAD = "pending", "sent", "dead"
# A hub start or stop that a later one of the same user made moot: the latest intent
# is what the server must end in, and a start that keeps failing must not hold back
# the stop of the CLEANUP that follows it.
SUPERSEDED = "superseded"
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
    busy: list[str] = field(default_factory=list)  # keys another process was sending

    def as_dict(self) -> dict[str, list]:
        return {"sent": self.sent, "failed": self.failed, "dead": self.dead,
                "busy": self.busy}


Sender = Callable[[Item], Any]

_COLS = ("id, order_id, created, service, key, method, path, body, status, attempts, "
         "last_error")


def _item(row: tuple) -> Item:
    (id_, order_id, created, service, key, method, path, body, status, attempts,
     last_error) = row
    return Item(id_, order_id, created, service, key, method, path,
                json.loads(body) if body else None, status, attempts, last_error)


class Outbox:
    def __init__(self, conn: sqlite3.Connection, state_dir: Path):
        self.conn = conn  # the journal's connection (state/db.py owns the tables)
        self.lock_dir = state_dir / "locks"

    def enqueue(self, order_id: Optional[int], service: str, key: str, method: str,
                path: str, body: Optional[dict] = None) -> int:
        cur = self.conn.execute(
            "INSERT INTO outbox (order_id, created, service, key, method, path, body) "
            "VALUES (?,?,?,?,?,?,?)",
            (order_id, time.time(), service, key, method, path,
             json.dumps(body) if body is not None else None))
        return int(cur.lastrowid or 0)

    def supersede(self, key: str, methods: tuple[str, ...], newer: int) -> int:
        """Mark the pending items of `key` with one of `methods`, older than item
        `newer`, superseded (never sent)."""
        marks = ",".join("?" * len(methods))
        return self.conn.execute(
            f"UPDATE outbox SET status=?, last_error=? WHERE key=? AND status=? AND "
            f"id<? AND method IN ({marks})",
            (SUPERSEDED, f"superseded by item {newer}", key, PENDING, newer, *methods)
        ).rowcount

    def items(self, status: Optional[str] = PENDING, keys: Optional[set[str]] = None,
              order_id: Optional[int] = None, limit: int = -1) -> list[Item]:
        """Items oldest first; every filter is in SQL (indexed), LIMIT applies last."""
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("status=?")
            args.append(status)
        if order_id is not None:
            where.append("order_id=?")
            args.append(order_id)
        if keys is not None:
            where.append(f"key IN ({','.join('?' * len(keys))})")
            args.extend(sorted(keys))
        sql = f"SELECT {_COLS} FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_item(r) for r in self.conn.execute(sql + " ORDER BY id LIMIT ?",
                                                    (*args, limit))]

    def pending_keys(self, keys: Optional[set[str]] = None) -> list[str]:
        """The keys with pending items, in the order of their oldest pending item."""
        sql = "SELECT key, MIN(id) AS first FROM outbox WHERE status='pending'"
        args: list[Any] = []
        if keys is not None:
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            args.extend(sorted(keys))
        return [r[0] for r in self.conn.execute(sql + " GROUP BY key ORDER BY first", args)]

    def hub_troubles(self) -> dict[str, Item]:
        """Per hub user, the latest hub call that failed at least once and is not
        delivered (pending with an error, or dead): what `status` shows."""
        rows = self.conn.execute(
            f"SELECT {_COLS} FROM outbox WHERE id IN (SELECT MAX(id) FROM outbox WHERE "
            f"service='hub' AND status IN ('pending', 'dead', 'sent') GROUP BY key)")
        return {i.path: i for i in map(_item, rows)
                if i.status == DEAD or (i.status == PENDING and i.last_error)}

    def pending_by_order(self) -> dict[int, int]:
        return {order_id: count for order_id, count in self.conn.execute(
            "SELECT order_id, COUNT(*) FROM outbox WHERE status='pending' GROUP BY order_id")}

    def has_body(self, key: str, body: dict) -> bool:
        """Whether an item of `key` (any status) carried exactly `body`."""
        return any(i.body == body for i in self.items(None, {key}))

    def count_pending(self, order_id: int, service: Optional[str] = None) -> int:
        sql = "SELECT COUNT(*) FROM outbox WHERE order_id=? AND status='pending'"
        args: list[Any] = [order_id]
        if service is not None:
            sql += " AND service=?"
            args.append(service)
        return self.conn.execute(sql, args).fetchone()[0]

    def _key_lock(self, key: str, wait: float) -> "contextlib.AbstractContextManager[None]":
        name = "outbox-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return hold(self.lock_dir / name, wait, f"outbox key {key}")

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

    def flush(self, send: Sender, keys: Optional[set[str]] = None,
              wait: float = KEY_LOCK_WAIT) -> FlushReport:
        """Send pending items in order per key; a key stops at its first failure. A key
        another process holds longer than `wait` is left to it (`report.busy`): it is
        sending those very items (a hub confirmation waits for a spawn)."""
        report = FlushReport()
        for key in self.pending_keys(keys):
            try:
                with self._key_lock(key, wait):
                    self._send_key(send, key, report)
            except Busy:
                report.busy.append(key)
        return report

    def _send_key(self, send: Sender, key: str, report: FlushReport) -> None:
        # Re-read under the lock: another process may have sent some meanwhile.
        for item in self.items(PENDING, {key}):
            try:
                send(item)
            except SendError as exc:
                if exc.temporary:
                    self._mark(item, PENDING, str(exc))
                    report.failed.append(item.id)
                    return  # later items of this key wait for this one
                self._mark(item, DEAD, str(exc))
                report.dead.append(item.id)
            except ValueError as exc:
                self._mark(item, DEAD, str(exc))
                report.dead.append(item.id)
            else:
                self._mark(item, SENT)
                report.sent.append(item.id)

    def prune_sent(self, keep_days: float) -> int:
        """Delivered items older than `keep_days` leave the outbox (their order's journal
        entry keeps what was done)."""
        return self.conn.execute("DELETE FROM outbox WHERE status='sent' AND sent < ?",
                                 (time.time() - keep_days * 86400,)).rowcount

    def requeue_dead(self, ids: Optional[list[int]] = None) -> int:
        sql = "UPDATE outbox SET status='pending' WHERE status='dead'"
        if ids:
            sql += f" AND id IN ({','.join('?' * len(ids))})"
        return self.conn.execute(sql, tuple(ids or ())).rowcount
