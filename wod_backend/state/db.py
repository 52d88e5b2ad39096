"""The state database: one SQLite file, every table, the schema version, migrations.

`state_dir/journal.db` (0600, WAL so that parallel deliveries do not wait on each
other for long) holds the journal (orders, their log lines, which students each
touched), the outbox and the signatures already used. Its schema version is
`PRAGMA user_version`; a database written by an older release is migrated forward on
first use, inside one write transaction, so concurrent first uses migrate once.
Nothing outside state/ writes SQL.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Callable

from wod_backend.errors import TemporaryFailure
from wod_backend.state.files import adopt, ensure_private_dir

# Version 0: the tables as the first release created them (no version set).
V0 = """
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
CREATE TABLE IF NOT EXISTS signatures (sig TEXT PRIMARY KEY, msgkey TEXT, seen REAL NOT NULL);
"""

# Version 1: which students each order touched (status reads the last order of a
# student through an index instead of scanning the journal), and indexes for the
# per-sender rate check, the running-CLEANUP check and the per-order outbox counts.
V1 = """
CREATE TABLE IF NOT EXISTS order_students (
    order_id INTEGER NOT NULL,
    student INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS order_students_student ON order_students(student, order_id);
INSERT INTO order_students (order_id, student)
    SELECT orders.id, json_each.value FROM orders, json_each(orders.students)
    WHERE orders.students IS NOT NULL AND json_valid(orders.students);
CREATE INDEX IF NOT EXISTS orders_sender ON orders(sender, received);
CREATE INDEX IF NOT EXISTS orders_action_outcome ON orders(action, outcome);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox(order_id, status);
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox(status, sent);
"""

MIGRATIONS: list[str] = [V0, V1]  # MIGRATIONS[n] brings a database to version n
VERSION = len(MIGRATIONS) - 1


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        # Version 0 is also "no version yet": its script creates what is missing.
        for target in range(0 if version == 0 else version + 1, VERSION + 1):
            for statement in _statements(MIGRATIONS[target]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    """The statements of a migration script, so that they run in one transaction
    (executescript would commit before it starts)."""
    out, current = [], []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        current.append(code)
        if code.rstrip().endswith(";"):
            text = "\n".join(current).strip()
            if text and sqlite3.complete_statement(text):
                out.append(text)
                current = []
    return out


def connect(db: Path, migrate: Callable[[sqlite3.Connection], None] = _migrate
            ) -> sqlite3.Connection:
    """Open (creating 0600) the state database under a private state directory, at
    the current schema version."""
    try:
        ensure_private_dir(db.parent)
        if not db.exists():
            os.close(os.open(db, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
        conn = sqlite3.connect(db, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn)
        for suffix in ("", "-wal", "-shm"):
            adopt(Path(f"{db}{suffix}"))
    except (OSError, sqlite3.Error) as exc:
        # The order is not lost: the MTA keeps the mail and retries.
        raise TemporaryFailure(f"state database {db} unusable: {exc}")
    return conn
