"""`python -m benchmarks.reference --original DIR [--repeat N]`: our backend beside the
original bash + Ansible one, interleaved in one run on one machine (by hand, not in CI).

DIR holds checkouts of Workshops-on-Demand's wod-backend, wod-install and wod-notebooks
(`git clone https://github.com/Workshops-on-Demand/<name>` for each). The original is
installed for its order path and run in a private mount and PID namespace
(benchmarks/original.py); ours runs as production runs it (resident worker and privd).
Both run as the same backend user, get the same order mails handed to procmail, talk to
the same JupyterHub (mocksu single-user servers) and the same frontend contract server,
and deliver the same published workshop from DIR/wod-notebooks with the variables of
wod-install's group_vars. Each side has its own students (ours from 9401, the
original's from 9501); a run alternates the sides, which goes first alternating too.

Measured from the mail handed to procmail: the password at the frontend; the whole
CREATE (the order's last line, the hub saying the server is ready); CLEANUP's report
(completion at the frontend) and the whole CLEANUP (the order's last line, the server
gone from the hub); the same for 5 orders at once; programs executed per order (the
kernel's process accounting). It prints each pair with the ratio original / ours and
writes benchmarks/results/reference.json. The host is left as it was found.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from email.utils import make_msgid
from pathlib import Path
from typing import Callable, Protocol

from benchmarks import original as orig
from benchmarks.harness import REPO, Report, Row
from benchmarks.production import CUSTOMER, LOW, production
from benchmarks.production import wait as production_wait

ORIGINAL_LOW = 9501
WORKSHOP = "WKSHP-Python101"
PER_SIDE = 40  # students for each side


class Side(Protocol):
    name: str

    def deliver(self, mail: bytes) -> None: ...

    def finished(self, n: int, action: str) -> int: ...

    def home(self, n: int) -> Path: ...


class Ours:
    name = "ours"

    def __init__(self, site: dict, user: str):
        self.be, self.journal, self.user = site["be"], site["journal"], user
        self.log = self.be.root / "reference-procmail.log"

    def deliver(self, mail: bytes) -> None:
        with self.log.open("ab") as out:
            p = subprocess.Popen(["setpriv", f"--reuid={self.user}", f"--regid={self.user}",
                                  "--init-groups", "procmail"], stdin=subprocess.PIPE,
                                 stdout=out, stderr=out, cwd="/")
        assert p.stdin is not None
        p.stdin.write(mail)
        p.stdin.close()

    def finished(self, n: int, action: str) -> int:
        return sum(1 for o in self.journal.orders(action) if n in json.loads(o[4]))

    def home(self, n: int) -> Path:
        return self.be.homes / f"student{n}"


class Theirs:
    name = "original"

    def __init__(self, original: orig.Original):
        self.original = original
        self.log = original.root.parent / "original-procmail.log"

    def deliver(self, mail: bytes) -> None:
        self.original.deliver(mail, self.log)

    def finished(self, n: int, action: str) -> int:
        return self.original.finished(n, action)

    def home(self, n: int) -> Path:
        return self.original.students / f"student{n}"


def delivered(side: Side, n: int, source: Path) -> None:
    """Both sides must have done the same work: every notebook of the workshop in the
    student's home, its variables rendered."""
    folder = side.home(n) / WORKSHOP
    for notebook in source.glob("*.ipynb"):
        text = (folder / notebook.name).read_text() if (folder / notebook.name).exists() \
            else ""
        if not text or "{{ BRANDING" in text or "{%" in text:
            raise RuntimeError(f"{side.name}: {folder / notebook.name} not delivered "
                               f"rendered: the comparison would be void")


def mail(action: str, n: int, user: str) -> bytes:
    return (f"From: admin@localhost\nTo: {user}@localhost\nMessage-ID: "
            f"{make_msgid('reference')}\nSubject: {action} {n} {CUSTOMER}\n\n"
            f"{WORKSHOP}\n").encode()


def wait(predicate: Callable[[], object], bound: float, step: float = 0.005) -> None:
    if not production_wait(predicate, bound, step):
        raise TimeoutError(f"waited {bound} s")


class Run:
    """The timed cases on both sides; samples by (case, side)."""

    def __init__(self, site: dict, user: str, source: Path):
        self.be, self.user, self.source = site["be"], user, source
        self.fe, self.hub = self.be.fe, self.be.hub
        self.samples: dict[tuple[str, str], list[float]] = {}

    def add(self, case: str, side: Side, value: float, keep: bool) -> None:
        if keep:
            self.samples.setdefault((case, side.name), []).append(value)

    def put_time(self, since: int, path: str, field: str) -> float:
        for t, p, body in self.fe.state.puts[since:]:
            if p == path and field in body:
                return t
        return 0.0

    def creates(self, side: Side, students: list[int], keep: bool, label: str) -> None:
        before = {n: self.fe.state.students[n]["password"] for n in students}
        done = {n: side.finished(n, "CREATE") for n in students}
        sent = time.time()
        for n in students:
            side.deliver(mail("CREATE", n, self.user))
        wait(lambda: all(self.fe.state.students[n]["password"] != before[n]
                         for n in students), 300, step=0.002)
        self.add(f"{label}: mail in -> the frontend has the password"
                 + (" (the last)" if len(students) > 1 else ""), side, time.time() - sent, keep)
        wait(lambda: all(side.finished(n, "CREATE") > done[n] and
                         (self.hub.server(f"student{n}") or {}).get("ready")
                         for n in students), 600, step=0.02)
        self.add(f"{label}, whole (done, the hub's start confirmed)", side,
                 time.time() - sent, keep)
        for n in students:
            delivered(side, n, self.source)

    def cleanups(self, side: Side, students: list[int], keep: bool, label: str) -> None:
        done = {n: side.finished(n, "CLEANUP") for n in students}
        since = len(self.fe.state.puts)
        sent = time.time()
        for n in students:
            side.deliver(mail("CLEANUP", n, self.user))
        if len(students) == 1:
            wait(lambda: self.put_time(since, f"customer/{CUSTOMER}",
                                       "completionPercentage"), 120, step=0.002)
            self.add(f"{label}: mail in -> the frontend has the report", side,
                     self.put_time(since, f"customer/{CUSTOMER}", "completionPercentage")
                     - sent, keep)
        wait(lambda: all(side.finished(n, "CLEANUP") > done[n] and
                         self.hub.server(f"student{n}") is None for n in students),
             600, step=0.02)
        self.add(f"{label}, whole (done, the hub's stop confirmed)", side,
                 time.time() - sent, keep)


def interleaved(run: Run, sides: list[Side], first: dict[str, int], times: int) -> None:
    nxt = dict(first)
    for i in range(times + 1):
        order = sides if i % 2 else sides[::-1]
        for side in order:  # single orders
            n = nxt[side.name]
            nxt[side.name] += 1
            run.creates(side, [n], i > 0, "CREATE")
            run.cleanups(side, [n], i > 0, "CLEANUP")
        for side in order:  # 5 at once
            students = list(range(nxt[side.name], nxt[side.name] + 5))
            nxt[side.name] += 5
            run.creates(side, students, i > 0, "5 CREATEs at once")
            run.cleanups(side, students, i > 0, "5 CLEANUPs at once")
        print(f"  run {i} {'(warm-up) ' if i == 0 else ''}done", flush=True)
    first.update(nxt)


def programs(run: Run, side: Side, n: int) -> dict[str, float]:
    """Programs executed and CPU seconds for one CREATE then one CLEANUP of student n."""
    pacct = Path(f"/var/log/account/wod-reference-{side.name}.pacct")
    pacct.parent.mkdir(parents=True, exist_ok=True)
    pacct.write_bytes(b"")
    subprocess.run(["accton", str(pacct)], check=True, capture_output=True)
    try:
        run.creates(side, [n], False, "programs")
        run.cleanups(side, [n], False, "programs")
    finally:
        subprocess.run(["accton", "off"], capture_output=True)
    count, cpu = 0, 0.0
    for line in subprocess.run(["dump-acct", str(pacct)], capture_output=True,
                               text=True).stdout.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) > 4 and fields[0] not in ("accton", "dump-acct"):
            count += 1
            cpu += (float(fields[2]) + float(fields[3])) / 100
    pacct.unlink()
    return {"programs": count, "cpu": cpu}


def ratios(report: Report, run: Run) -> list[dict]:
    report.header("the original beside ours (medians; ratio = original / ours)")
    table = []
    cases = list(dict.fromkeys(case for case, _side in run.samples))
    for case in cases:
        theirs = run.samples.get((case, "original"), [])
        ours = run.samples.get((case, "ours"), [])
        if not theirs or not ours:
            continue
        ratio = statistics.median(theirs) / statistics.median(ours)
        report.add(Row(f"{case}, original", "s", theirs))
        report.add(Row(f"{case}, ours", "s", ours, note=f"ratio {ratio:.1f}x",
                       extra={"ratio": ratio}))
        table.append({"case": case, "original": statistics.median(theirs),
                      "ours": statistics.median(ours), "ratio": ratio})
    return table


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.reference")
    ap.add_argument("--original", required=True, type=Path,
                    help="a folder with checkouts of wod-backend, wod-install, wod-notebooks")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each case (default 3)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/reference.json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("the reference benchmark needs root (accounts, namespaces)", file=sys.stderr)
        return 77
    problems = orig.preflight(args.original.resolve())
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 78
    orig.ensure_ansible()
    report = Report()
    print(f"machine: {report.machine()}")
    src = args.original.resolve()
    variables = {k: str(v) for k, v in orig.published_variables(src).items()}
    from support.mailpath import BACKEND_USER

    with production(LOW + PER_SIDE - 1, content=src / "wod-notebooks",
                    variables=variables) as site:
        be = site["be"]
        be.fe.add_students(range(ORIGINAL_LOW, ORIGINAL_LOW + PER_SIDE))
        original = orig.Original(src, be.root / "original", BACKEND_USER, ORIGINAL_LOW,
                                 ORIGINAL_LOW + PER_SIDE - 1,
                                 (be.fe.url, "moderator", "mod-Secret1"),
                                 (be.hub.url, be.hub.token))
        try:
            original.start()
            run = Run(site, BACKEND_USER, src / "wod-notebooks" / WORKSHOP)
            sides: list[Side] = [Ours(site, BACKEND_USER), Theirs(original)]
            first = {"ours": LOW, "original": ORIGINAL_LOW}
            report.header(f"the same orders, both sides, {args.repeat} runs + 1 warm-up")
            interleaved(run, sides, first, args.repeat)
            table = ratios(report, run)
            report.header("programs executed and CPU for one CREATE + one CLEANUP")
            for side in sides:
                got = programs(run, side, first[side.name])
                report.add(Row(f"programs executed, {side.name}", "count",
                               [got["programs"]]))
                report.add(Row(f"CPU seconds (user + system), {side.name}", "s",
                               [got["cpu"]]))
        finally:
            original.stop()
    report.save(args.out)
    print("\n| case | ratio original / ours |\n|---|---|")
    for row in table:
        print(f"| {row['case']} | {row['ratio']:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
