"""The journal: every order received, recorded in SQLite before anything is done.

One row per order: where it came from, the raw subject and message (so that it can be
replayed), the parsed fields, then its outcome, reason, duration and a detail log; the
students each order touched, for `status`; the signatures already used. The tables
are state/db.py's.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from wod_backend.state.db import connect
from wod_backend.state.files import pid_alive

# Outcomes an order goes through.
RECEIVED = "received"
RUNNING = "running"
REFUSED = "refused"
PLANNED = "planned"  # a dry run
DONE = "done"
DONE_PENDING = "done, reports pending"  # system work done, reports queued
FAILED = "failed"
DUPLICATE = "duplicate"  # the same message again: not executed twice
INTERRUPTED = "interrupted"  # shown for a running order whose process is gone
PROBE = "probe"  # doctor's probe mail: journaled, nothing run


_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")


def redact(text: Optional[str]) -> Optional[str]:
    """Every e-mail address in `text` replaced by `<address removed>`."""
    return None if text is None else _ADDRESS.sub("<address removed>", text)


@dataclass(frozen=True)
class Entry:
    id: int
    received: float
    source: str
    message_id: Optional[str]
    subject: Optional[str]
    action: Optional[str]
    students: list[int]
    customer: Optional[str]
    workshop: Optional[str]
    outcome: str
    reason: Optional[str]
    duration: Optional[float]
    pid: Optional[int]
    retry_of: Optional[int]
    detail: str

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["outcome"] = self.shown_outcome
        return out

    @property
    def shown_outcome(self) -> str:
        """`running` of a process that died (kill -9, reboot) shows as interrupted."""
        if self.outcome in (RECEIVED, RUNNING) and not pid_alive(self.pid):
            return INTERRUPTED
        return self.outcome


class Journal:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.conn = connect(state_dir / "journal.db")

    def record(self, source: str, *, subject: Optional[str] = None,
               message_id: Optional[str] = None, raw: Optional[bytes] = None,
               order: Optional[dict[str, Any]] = None, outcome: str = RECEIVED,
               reason: Optional[str] = None, msgkey: Optional[str] = None,
               retry_of: Optional[int] = None, sender: Optional[str] = None) -> int:
        order = order or {}
        cur = self.conn.execute(
            "INSERT INTO orders (received, source, message_id, subject, raw, action, "
            "students, customer, workshop, outcome, reason, pid, msgkey, retry_of, sender) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (time.time(), source, message_id, subject, raw, order.get("action"),
             json.dumps(order.get("students", [])), order.get("customer"),
             order.get("workshop"), outcome, reason, os.getpid(), msgkey, retry_of,
             sender))
        entry = int(cur.lastrowid or 0)
        self._students(entry, order.get("students", []))
        return entry

    def _students(self, entry_id: int, students: Iterable[int]) -> None:
        self.conn.executemany("INSERT INTO order_students (order_id, student) VALUES (?, ?)",
                              [(entry_id, n) for n in students])

    def update(self, entry_id: int, *, outcome: Optional[str] = None,
               reason: Optional[str] = None, duration: Optional[float] = None,
               order: Optional[dict[str, Any]] = None) -> None:
        sets, args = [], []
        for col, val in (("outcome", outcome), ("reason", reason), ("duration", duration)):
            if val is not None:
                sets.append(f"{col}=?")
                args.append(val)
        if order is not None:
            sets += ["action=?", "students=?", "customer=?", "workshop=?"]
            args += [order["action"], json.dumps(order["students"]), order["customer"],
                     order["workshop"]]
            self.conn.execute("DELETE FROM order_students WHERE order_id=?", (entry_id,))
            self._students(entry_id, order["students"])
        if sets:
            self.conn.execute(f"UPDATE orders SET {', '.join(sets)} WHERE id=?",
                              (*args, entry_id))

    def log(self, entry_id: int, text: str) -> None:
        """Append lines to an order's detail log (hook output, steps done)."""
        line = text if text.endswith("\n") else text + "\n"
        self.conn.execute("INSERT INTO order_log (order_id, line) VALUES (?, ?)",
                          (entry_id, line))

    def _entry(self, row: tuple) -> Entry:
        (id_, received, source, message_id, subject, action, students, customer, workshop,
         outcome, reason, duration, pid, retry_of, detail) = row
        return Entry(id_, received, source, message_id, subject, action,
                     json.loads(students or "[]"), customer, workshop, outcome, reason,
                     duration, pid, retry_of, detail)

    _COLS = ("id, received, source, message_id, subject, action, students, customer, "
             "workshop, outcome, reason, duration, pid, retry_of, "
             "(SELECT COALESCE(GROUP_CONCAT(line, ''), '') FROM "
             "(SELECT line FROM order_log WHERE order_id = orders.id ORDER BY rowid))")

    def latest(self, limit: int = 20, detail: bool = True) -> list[Entry]:
        cols = self._COLS if detail else self._COLS.rsplit(", (SELECT", 1)[0] + ", ''"
        rows = self.conn.execute(
            f"SELECT {cols} FROM orders ORDER BY id DESC LIMIT ?", (limit,))
        return [self._entry(r) for r in rows]

    def get(self, entry_id: int) -> Optional[Entry]:
        row = self.conn.execute(f"SELECT {self._COLS} FROM orders WHERE id=?",
                                (entry_id,)).fetchone()
        return self._entry(row) if row else None

    def running(self, action: str) -> list[Entry]:
        """Orders of `action` that started and have not ended (their process may have)."""
        rows = self.conn.execute(
            f"SELECT {self._COLS} FROM orders WHERE action=? AND outcome IN (?, ?) "
            f"ORDER BY id", (action, RECEIVED, RUNNING))
        return [self._entry(r) for r in rows]

    def active(self, since: float, exclude: int) -> int:
        """How many orders received since `since` (but `exclude`) run now: started,
        not ended, their process alive."""
        rows = self.conn.execute(
            "SELECT pid FROM orders WHERE id > (SELECT COALESCE(MAX(id), 0) - 1000 FROM "
            "orders) AND received >= ? AND id != ? AND outcome IN (?, ?)",
            (since, exclude, RECEIVED, RUNNING))
        return sum(1 for (pid,) in rows if pid_alive(pid))

    def forget_personal(self, before: float) -> int:
        """Orders received before `before` keep their outcome row (action, students,
        customer, workshop, outcome, reason, duration) but lose their raw mail, their
        sender and every e-mail address in their subject and log; how many changed."""
        rows = self.conn.execute(
            "SELECT id, subject FROM orders WHERE received < ? AND (raw IS NOT NULL OR "
            "sender IS NOT NULL OR subject LIKE '%@%')", (before,)).fetchall()
        for entry, subject in rows:
            self.conn.execute("UPDATE orders SET raw=NULL, sender=NULL, subject=? WHERE id=?",
                              (redact(subject), entry))
            for rowid, line in self.conn.execute(
                    "SELECT rowid, line FROM order_log WHERE order_id=? AND line LIKE '%@%'",
                    (entry,)).fetchall():
                self.conn.execute("UPDATE order_log SET line=? WHERE rowid=?",
                                  (redact(line), rowid))
        return len(rows)

    def executed(self, msgkey: str, since: float, exclude: int) -> Optional[int]:
        """An earlier order of the same message that ran (or runs) to completion."""
        row = self.conn.execute(
            "SELECT id FROM orders WHERE msgkey=? AND id!=? AND received>=? AND outcome IN "
            "(?, ?) ORDER BY id DESC LIMIT 1", (msgkey, exclude, since, DONE, DONE_PENDING)
        ).fetchone()
        return row[0] if row else None

    def raw(self, entry_id: int) -> Optional[bytes]:
        row = self.conn.execute("SELECT raw FROM orders WHERE id=?", (entry_id,)).fetchone()
        return row[0] if row else None

    def last_orders(self, students: Iterable[int]) -> dict[int, Entry]:
        """Per student, the last order that was understood and not refused or a
        duplicate: one indexed lookup per student, at any journal size."""
        found: dict[int, Entry] = {}
        cols = self._COLS.rsplit(", (SELECT", 1)[0] + ", ''"
        for n in students:
            row = self.conn.execute(
                f"SELECT {cols} FROM orders WHERE id = (SELECT MAX(s.order_id) FROM "
                f"order_students s JOIN orders o ON o.id = s.order_id WHERE s.student=? "
                f"AND o.action IS NOT NULL AND o.outcome NOT IN (?, ?))",
                (n, REFUSED, DUPLICATE)).fetchone()
            if row is not None:
                found[n] = self._entry(row)
        return found

    def orders_from(self, sender: str, since: float, exclude: int) -> int:
        """How many orders `sender` gave since `since` (the rate limit), indexed."""
        return int(self.conn.execute(
            "SELECT COUNT(*) FROM orders WHERE sender=? AND received>=? AND id!=?",
            (sender, since, exclude)).fetchone()[0])

    def use_signature(self, sig: str, msgkey: str, forget_before: float) -> Optional[str]:
        """Record a signature as used by message `msgkey`; the message key it was used
        with before, if any. Signatures older than `forget_before` are forgotten."""
        self.conn.execute("DELETE FROM signatures WHERE seen < ?", (forget_before,))
        seen = self.conn.execute("SELECT msgkey FROM signatures WHERE sig=?",
                                 (sig,)).fetchone()
        self.conn.execute("INSERT OR IGNORE INTO signatures (sig, msgkey, seen) "
                          "VALUES (?, ?, ?)", (sig, msgkey, time.time()))
        return seen[0] if seen else None
