"""The journal: every order received, recorded in SQLite before anything is done.

One row per order: where it came from, the raw subject and message (so that it can be
replayed), the parsed fields, then its outcome, reason, duration and a detail log. The
database lives under `state_dir` (0700) in a 0600 file, in WAL mode so that parallel
deliveries do not block each other for long.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from wod_backend.errors import TemporaryFailure

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received REAL NOT NULL,
    source TEXT NOT NULL,
    message_id TEXT,
    subject TEXT,
    raw BLOB,
    action TEXT,
    students TEXT,
    customer TEXT,
    workshop TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    duration REAL,
    pid INTEGER,
    msgkey TEXT,
    sender TEXT,
    retry_of INTEGER,
    detail TEXT NOT NULL DEFAULT ''  -- unused: the log lives in order_log
);
-- Append-only: appending to one growing text column rewrote it whole on every line,
-- quadratic in a 1,000-student batch.
CREATE TABLE IF NOT EXISTS order_log (
    order_id INTEGER NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_log_order ON order_log(order_id);
CREATE INDEX IF NOT EXISTS orders_msgkey ON orders(msgkey);
"""

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


def pid_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def adopt(path: Path) -> None:
    """Give what root creates under the state directory to the directory's owner.

    The state belongs to the backend user; an admin running wod-backend as root (history,
    retry, a batch from cron) must not leave files there that the backend user can no
    longer open (a root-owned journal-wal would stop every mail with exit 75)."""
    if os.geteuid() != 0:
        return
    try:
        owner = path.parent.stat()
        st = os.lstat(path)
        if owner.st_uid != 0 and st.st_uid != owner.st_uid:
            os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)
    except OSError:
        pass


def ensure_private_dir(path: Path) -> None:
    """`path` as a real 0700 directory (created if need be); a link in its place is
    refused, never followed, and the mode is changed through a descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    adopt(path)


def connect(db: Path) -> sqlite3.Connection:
    """Open (creating 0600) a database under a private state directory."""
    try:
        ensure_private_dir(db.parent)
        if not db.exists():
            os.close(os.open(db, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(db, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        for suffix in ("", "-wal", "-shm"):
            adopt(Path(f"{db}{suffix}"))
    except (OSError, sqlite3.Error) as exc:
        # The order is not lost: the MTA keeps the mail and retries.
        raise TemporaryFailure(f"state database {db} unusable: {exc}")
    return conn


class Journal:
    def __init__(self, state_dir: Path):
        from wod_backend.state.outbox import SCHEMA as OUTBOX_SCHEMA

        self.conn = connect(state_dir / "journal.db")
        self.conn.executescript(SCHEMA + OUTBOX_SCHEMA)

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
        return int(cur.lastrowid)

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
