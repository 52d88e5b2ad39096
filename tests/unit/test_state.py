"""The state database: schema version and migrations, indexed queries, retention."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time

from support.cli import DATA, invoke
from wod_backend.state import db
from wod_backend.state.journal import DONE, Journal
from wod_backend.state.outbox import Outbox

V0 = DATA / "state" / "journal-v0.db"  # written by the release before the redesign


def test_a_journal_of_the_previous_release_opens_and_migrates(tmp_path, demo, demo_cfg):
    state = demo_cfg.state_dir
    state.mkdir(exist_ok=True)
    shutil.copy(V0, state / "journal.db")
    assert sqlite3.connect(state / "journal.db").execute(
        "PRAGMA user_version").fetchone()[0] == 0
    history = json.loads(invoke(["--config", str(demo), "history", "--json"]).out)
    assert [(e["id"], e["action"], e["outcome"]) for e in history][::-1] == [
        (1, "CREATE", "done"), (2, "CREATE", "duplicate"), (3, None, "refused"),
        (4, "CLEANUP", "done"), (5, "CREATE", "done"), (6, "RESET", "done")]
    journal = Journal(state)
    assert journal.conn.execute("PRAGMA user_version").fetchone()[0] == db.VERSION
    # backfilled: the students each old order touched
    assert {n: e.id for n, e in journal.last_orders([3, 5, 7, 9]).items()} == {3: 4, 5: 5, 7: 6}
    outbox = Outbox(journal.conn, state)
    assert [(i.id, i.status) for i in outbox.items(None)] == [
        (1, "dead"), (2, "pending"), (3, "sent"), (4, "pending")]
    assert outbox.pending_by_order() == {1: 1, 4: 1}
    # a signature the old release recorded is still known (a replay stays refused)
    assert journal.use_signature("x" * 64, "k", 0) is None
    assert journal.conn.execute("SELECT COUNT(*) FROM signatures").fetchone()[0] == 3
    # and new orders go on from there
    r = invoke(["--config", str(demo), "create", "WKSHP-API101", "9"])
    assert r.code == 0, r.err
    assert journal.last_orders([9])[9].id == 7


def test_a_new_database_is_created_at_the_current_version(tmp_path):
    journal = Journal(tmp_path / "state")
    assert journal.conn.execute("PRAGMA user_version").fetchone()[0] == db.VERSION
    Journal(tmp_path / "state")  # opening again changes nothing
    assert journal.conn.execute("PRAGMA user_version").fetchone()[0] == db.VERSION


def test_status_finds_a_students_last_order_at_any_journal_size(tmp_path):
    journal = Journal(tmp_path / "state")
    first = journal.record("cli", order={"action": "CREATE", "students": [42],
                                         "customer": "1", "workshop": "WKSHP-X"})
    journal.update(first, outcome=DONE)
    rows = [(time.time(), "mail", "refused") for _ in range(30000)]
    journal.conn.executemany("INSERT INTO orders (received, source, outcome) VALUES (?,?,?)",
                             rows)
    newer = journal.record("cli", order={"action": "CREATE", "students": [43],
                                         "customer": "1", "workshop": "WKSHP-X"})
    last = journal.last_orders([42, 43, 44])
    assert {n: e.id for n, e in last.items()} == {42: first, 43: newer}


def test_per_sender_rate_and_last_orders_use_indexes(tmp_path):
    conn = Journal(tmp_path / "state").conn
    plan = " ".join(r[-1] for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT COUNT(*) FROM orders WHERE sender=? AND received>=? "
        "AND id!=?", ("a", 0, 0)))
    assert "USING INDEX orders_sender" in plan or "USING COVERING INDEX orders_sender" in plan
    plan = " ".join(r[-1] for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT MAX(order_id) FROM order_students WHERE student=?", (1,)))
    assert "order_students_student" in plan


def test_outbox_filters_by_key_in_sql_before_the_limit(tmp_path):
    journal = Journal(tmp_path / "state")
    outbox = Outbox(journal.conn, tmp_path / "state")
    for n in range(50):
        outbox.enqueue(1, "frontend", f"student:{n}", "PUT", f"student/{n}", {"assigned": True})
    outbox.enqueue(2, "frontend", "customer:7", "PUT", "customer/7", {"active": True})
    assert [i.key for i in outbox.items("pending", {"customer:7"}, limit=1)] == ["customer:7"]
    assert outbox.pending_keys({"customer:7", "student:3"}) == ["student:3", "customer:7"]


def test_delivered_items_leave_the_outbox_after_keep_sent_days(tmp_path):
    journal = Journal(tmp_path / "state")
    outbox = Outbox(journal.conn, tmp_path / "state")
    old = outbox.enqueue(1, "hub", "hub:a", "start", "a")
    new = outbox.enqueue(2, "hub", "hub:b", "start", "b")
    kept = outbox.enqueue(3, "hub", "hub:c", "start", "c")
    report = outbox.flush(lambda item: None, {"hub:a", "hub:b"})
    assert report.sent == [old, new]
    journal.conn.execute("UPDATE outbox SET sent=? WHERE id=?", (time.time() - 40 * 86400, old))
    assert outbox.prune_sent(30) == 1
    assert [(i.id, i.status) for i in outbox.items(None)] == [(new, "sent"),
                                                              (kept, "pending")]
