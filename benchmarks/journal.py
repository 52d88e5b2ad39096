"""How the journal's reads grow with its size: `history`, `status`, the duplicate check
and the per-sender rate check at 1,000, 10,000 and 100,000 orders (in-process, through
the state package's own API, on a journal filled the way orders fill it)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Report, Row, repeat, slope


def fill(journal, upto: int, have: int) -> None:
    """Orders have+1..upto: CREATEs and CLEANUPs of 100 students, 5 senders, a few log
    lines each, in one transaction (as many orders would, one by one)."""
    from wod_backend.state.locks import message_key

    conn = journal.conn
    conn.execute("BEGIN")
    for i in range(have, upto):
        n = 1 + i % 100
        action = "CREATE" if i % 2 == 0 else "CLEANUP"
        key = message_key(f"<{i}@bench>", None, None)
        entry = journal.record("mail", subject=f"{action} {n} {4000 + i}",
                               message_id=f"<{i}@bench>", raw=b"x" * 400, msgkey=key,
                               sender=f"frontend{i % 5}@example.org",
                               order={"action": action, "students": [n],
                                      "customer": str(4000 + i), "workshop": "WKSHP-X"})
        journal.update(entry, outcome="done", duration=0.2)
        for step in ("new_password ok (0.001s)", "wipe_home ok (0.002s)"):
            journal.log(entry, f"student{n}: {step}")
    conn.execute("COMMIT")


def journal_growth(report: Report, times: int) -> None:
    from wod_backend.state.journal import Journal

    report.header("issue 17: journal reads against the journal's size (in-process)")
    root = Path(tempfile.mkdtemp(prefix="wod-bench-journal-"))
    try:
        journal = Journal(root / "state")
        sizes, have = (1000, 10000, 100000), 0
        series: dict[str, list[float]] = {"history": [], "status": [], "duplicate": [],
                                          "rate": []}
        for size in sizes:
            fill(journal, size, have)
            have = size
            key = "not-a-message-seen-before"
            cases = {
                "history": lambda i: journal.latest(20),
                "status": lambda i: journal.last_orders(range(1, 101)),
                "duplicate": lambda i: journal.executed(key, 0.0, exclude=0),
                "rate": lambda i: journal.orders_from("frontend1@example.org",
                                                      time.time() - 60, exclude=0),
            }
            for name, fn in cases.items():
                ms = [t * 1000 for t in repeat(fn, times)]
                row = report.add(Row(f"{name} at {size:,} orders", "ms", ms, "", "",
                                     {"id": f"journal_{name}_{size}"}))
                series[name].append(row.median)
        for name, medians in series.items():
            report.add(Row(f"  {name}: slope per 1,000 orders", "ms",
                           [slope([s / 1000 for s in sizes], medians)]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
