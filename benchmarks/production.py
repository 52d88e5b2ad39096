"""The performance issue's cases, run the way production runs: order mails through
postfix and procmail to the unprivileged backend user, root steps through sudo and the
helper, a real JupyterHub (mocksu single-user servers, the hub's default
`slow_spawn_timeout`), the frontend contract server on loopback.

Each case has a stable id in the results JSON (`extra.id`; its median in `median`):
time_to_password, create_total, server_ready, cleanup_total, burst_50, burst_200,
reset_1000, reset_10000. Figures only: nothing here asserts a target.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from benchmarks.harness import Report, Row

LOW = 9401
WOD = str(Path(sys.executable).parent / "wod-backend")
CUSTOMER = 4711  # customers 4711..4719 exist in the contract server
RESET_CUSTOMER = 4719


class Journal:
    """The backend's journal read directly (read-only), so that polling it costs the
    backend nothing: no wod-backend process per look."""

    def __init__(self, state: Path):
        self.db = state / "journal.db"
        self.conn: Optional[sqlite3.Connection] = None

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            self.conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        return self.conn

    def orders(self, action: str, since_id: int = 0) -> list[tuple]:
        """(id, received, outcome, duration, students) of finished orders of `action`."""
        return self._query("SELECT id, received, outcome, duration, students FROM orders "
                           "WHERE action=? AND id>? AND outcome NOT IN ('received', "
                           "'running')", (action, since_id))

    def last_id(self) -> int:
        rows = self._query("SELECT COALESCE(MAX(id), 0) FROM orders", ())
        return rows[0][0] if rows else 0

    def _query(self, sql: str, args: tuple) -> list[tuple]:
        """Nothing yet while the backend has not made the journal (or its tables)."""
        if not self.db.exists():
            return []
        try:
            return list(self._conn().execute(sql, args))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise

    def log(self, order_id: int) -> list[str]:
        return [r[0] for r in self._conn().execute(
            "SELECT line FROM order_log WHERE order_id=? ORDER BY rowid", (order_id,))]

    def pending(self, service: str) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM outbox WHERE status='pending' "
                                    "AND service=?", (service,)).fetchone()[0]


def wait(predicate: Callable[[], object], bound: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


@contextmanager
def production(high: int, worker: bool = True, resident: bool = True,
               **backend: object) -> Iterator[dict]:
    """A backend on the real mail path for students LOW..high, with a reset workshop
    whose reset hook is a script, and the ranges the batch cases need. `backend`: more
    of mail_backend's arguments (another content root and its variables)."""
    from support.mailpath import mail_backend

    with mail_backend(low=LOW, high=high, real_singleuser=False,
                      extra="intake: {max_range: 10000, max_per_minute: 100000}\n",
                      **backend) as be:  # type: ignore[arg-type]
        ws = be.root / "content" / "WKSHP-Resettable"
        ws.mkdir()
        (ws / "wod.yml").write_text("name: Resettable\nreset: true\n")
        (ws / "0-ReadMeFirst.ipynb").write_text(
            '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
        script = be.root / "hooks" / "scripts" / "reset-WKSHP-Resettable.sh"
        script.write_text("true\n")
        be.fe.add_workshop(9, "WKSHP-Resettable", reset=True, range=[LOW, high])
        be.fe.state.customers[RESET_CUSTOMER]["cleaned"] = True
        if worker:  # as `setup` runs it
            subprocess.run([WOD, "--config", str(be.config), "worker", "start"], check=True,
                           capture_output=True)
        if resident:  # the resident privileged side, as `setup` runs it (root's)
            subprocess.run([WOD, "--config", str(be.config), "privd", "start"], check=True,
                           capture_output=True)
        try:
            yield {"be": be, "journal": Journal(be.root / "state")}
        finally:
            for service in ("worker", "privd"):
                subprocess.run([WOD, "--config", str(be.config), service, "stop"],
                               capture_output=True)


def mail(be, subject: str, body: str) -> float:
    """Send one order mail by SMTP; when it was handed over (time.time(), as the
    journal's `received`)."""
    sent = time.time()
    be.smtp_send(subject, body)
    return sent


# -- single orders ----------------------------------------------------------------------

def single(report: Report, site: dict, times: int) -> None:
    be, journal = site["be"], site["journal"]
    report.header("issue 17: single orders through postfix + procmail + sudo "
                  "(mail handed to postfix -> ...)")
    ttp, total, ready, spawn, cleanup = [], [], [], [], []
    for i in range(times + 1):
        n = LOW + i
        user = f"student{n}"
        before_pw = be.fe.state.students[n]["password"]
        last = journal.last_id()
        sent = mail(be, f"CREATE {n} {CUSTOMER} bench@example.org", "WKSHP-Python101")
        wait(lambda: be.fe.state.students[n]["password"] != before_pw, 60)
        got_password = time.time()
        wait(lambda: journal.orders("CREATE", last), 60)
        done = time.time()
        wait(lambda: (be.hub.server(user) or {}).get("ready"), 120, step=0.02)
        server_up = time.time()
        if i == 0:
            continue  # the first order warms the caches (page cache, the hub's database)
        ttp.append(got_password - sent)
        total.append(done - sent)
        ready.append(server_up - sent)
        spawn.append(hub_spawn_alone(be, f"bench-alone{i}"))
        last = journal.last_id()
        sent = mail(be, f"CLEANUP {n} {CUSTOMER}", "WKSHP-Python101")
        wait(lambda: journal.orders("CLEANUP", last), 60)
        cleanup.append(time.time() - sent)
    report.add(Row("time_to_password: mail in -> the frontend has the password", "s", ttp,
                   "<= 0.300", "original backend: 10.8 s", {"id": "time_to_password"}))
    report.add(Row("create_total: mail in -> the order's process ends", "s", total,
                   "<= 0.500", "original: 11.8-12.0 s", {"id": "create_total"}))
    report.add(Row("server_ready: mail in -> the hub says the server is ready", "s", ready,
                   "spawn + 1.0", "", {"id": "server_ready"}))
    report.add(Row("  the hub's own spawn (a start asked of the hub directly)", "s", spawn,
                   "", "", {"id": "hub_spawn_alone"}))
    report.add(Row("cleanup_total: mail in -> the CLEANUP's process ends", "s", cleanup,
                   "<= 0.300", "original: 1.03 s", {"id": "cleanup_total"}))


def cleanups(report: Report, site: dict, times: int, first: int) -> None:
    """cleanup_report: mail in -> the frontend has the CLEANUP's report (its completion);
    cleanup_whole: mail in -> the order done and the hub's stop confirmed (the server
    gone from the hub's API). Each student gets a CREATE first, not timed."""
    be, journal = site["be"], site["journal"]
    report.header("issue 28: CLEANUP through postfix + procmail (mail handed to postfix "
                  "-> ...)")
    got_report, cleaned, whole, alone = [], [], [], []
    for i in range(times + 1):
        n, user = first + i, f"student{first + i}"
        last = journal.last_id()
        mail(be, f"CREATE {n} {CUSTOMER}", "WKSHP-Python101")
        wait(lambda: journal.orders("CREATE", last), 60)
        wait(lambda: (be.hub.server(user) or {}).get("ready"), 120, step=0.02)
        puts = len(be.fe.state.puts)
        last = journal.last_id()
        sent = mail(be, f"CLEANUP {n} {CUSTOMER}", "WKSHP-Python101")

        def put_time(field: str) -> float:
            for t, path, body in be.fe.state.puts[puts:]:
                if path == f"customer/{CUSTOMER}" and field in body:
                    return t
            return 0.0
        wait(lambda: put_time("completionPercentage"), 60, step=0.002)
        reported = put_time("completionPercentage")
        wait(lambda: journal.orders("CLEANUP", last) and be.hub.server(user) is None, 60,
             step=0.005)
        ended = time.time()
        if i == 0:
            continue  # warm-up
        got_report.append(reported - sent)
        cleaned.append(put_time("cleaned") - sent)
        whole.append(ended - sent)
        alone.append(hub_stop_alone(be, f"bench-stop{i}"))
    report.add(Row("cleanup_report: mail in -> the frontend has the completion report", "s",
                   got_report, "<= 0.100", "original: 0.26-0.29 s", {"id": "cleanup_report"}))
    report.add(Row("  mail in -> the frontend has cleaned=true (the last report)", "s",
                   cleaned, "", "", {"id": "cleanup_cleaned"}))
    report.add(Row("cleanup_whole: mail in -> done, the hub's stop confirmed", "s", whole,
                   "<= 0.400", "original: 0.90-0.91 s", {"id": "cleanup_whole"}))
    report.add(Row("  the hub's own stop (a stop asked of the hub directly)", "s", alone,
                   "", "", {"id": "hub_stop_alone"}))


def parallel5(report: Report, site: dict, times: int, first: int) -> None:
    """parallel5_password: 5 CREATE mails at once -> the last password at the frontend."""
    be, journal = site["be"], site["journal"]
    report.header("issue 28: 5 CREATE mails at once")
    last_password = []
    for i in range(times + 1):
        students = list(range(first + 5 * i, first + 5 * i + 5))
        before = {n: be.fe.state.students[n]["password"] for n in students}
        last = journal.last_id()
        started = time.time()
        threads = [threading.Thread(target=mail, args=(be, f"CREATE {n} {CUSTOMER}",
                                                       "WKSHP-Python101")) for n in students]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait(lambda: all(be.fe.state.students[n]["password"] != before[n]
                         for n in students), 60, step=0.002)
        got = time.time() - started
        wait(lambda: len(journal.orders("CREATE", last)) >= 5, 60)
        wait(lambda: journal.pending("hub") == 0, 120, step=0.05)
        if i:
            last_password.append(got)
    report.add(Row("parallel5_password: 5 CREATEs at once -> the last password at the "
                   "frontend", "s", last_password, "<= 0.500", "original: 34-42 s",
                   {"id": "parallel5_password"}))


def root_side(report: Report, site: dict, times: int, first: int) -> None:
    """The same CREATE and CLEANUP with the resident privileged side and through sudo,
    alternated run by run (privd stopped and started between them)."""
    be, journal = site["be"], site["journal"]
    report.header("issue 28: root's side, resident (privd) against sudo, interleaved")
    out: dict[str, list[float]] = {}
    for i in range(times + 1):
        for mode in ("sudo", "resident"):
            subprocess.run([WOD, "--config", str(be.config), "privd",
                            "stop" if mode == "sudo" else "start"], capture_output=True)
            n = first + 2 * i + (mode == "resident")
            before = be.fe.state.students[n]["password"]
            last = journal.last_id()
            sent = mail(be, f"CREATE {n} {CUSTOMER}", "WKSHP-Python101")
            wait(lambda: be.fe.state.students[n]["password"] != before, 60, step=0.002)
            ttp = time.time() - sent
            wait(lambda: journal.orders("CREATE", last), 60, step=0.002)
            total = journal.orders("CREATE", last)[0][3]
            last = journal.last_id()
            sent = mail(be, f"CLEANUP {n} {CUSTOMER}", "WKSHP-Python101")
            wait(lambda: journal.orders("CLEANUP", last), 60, step=0.002)
            cleanup = time.time() - sent
            wait(lambda: journal.pending("hub") == 0, 120, step=0.05)
            if i:
                for name, value in (("time_to_password", ttp), ("CREATE order", total),
                                    ("CLEANUP mail in -> done", cleanup)):
                    out.setdefault(f"{name}, {mode}", []).append(value)
    for name, values in out.items():
        report.add(Row(name, "s", values))


def order_programs(report: Report, site: dict, first: int) -> None:
    """Programs executed and CPU by program for 10 CREATEs at once, from the kernel's
    process accounting (Debian's acct: accton, dump-acct): what each order starts."""
    import shutil

    be, journal = site["be"], site["journal"]
    report.header("issue 28: programs per order (process accounting, 10 CREATEs at once)")
    if not shutil.which("accton") or not shutil.which("dump-acct"):
        print("  (apt-get install acct to count programs per order)")
        return
    pacct = Path("/var/log/account/wod-bench.pacct")
    pacct.parent.mkdir(parents=True, exist_ok=True)
    pacct.write_bytes(b"")
    last = journal.last_id()
    subprocess.run(["accton", str(pacct)], check=True, capture_output=True)
    try:
        threads = [threading.Thread(target=mail, args=(be, f"CREATE {n} {CUSTOMER}",
                                                       "WKSHP-Python101"))
                   for n in range(first, first + 10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait(lambda: len(journal.orders("CREATE", last)) >= 10, 120, step=0.05)
    finally:
        subprocess.run(["accton", "off"], capture_output=True)
    wait(lambda: journal.pending("hub") == 0, 300, step=0.1)  # the spawns, before the next case
    by_program: dict[str, list[float]] = {}
    for line in subprocess.run(["dump-acct", str(pacct)], capture_output=True,
                               text=True).stdout.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) > 4:
            by_program.setdefault(fields[0], []).append(
                (float(fields[2]) + float(fields[3])) / 100)
    for program, cpu in sorted(by_program.items(), key=lambda kv: -sum(kv[1])):
        report.add(Row(f"  {program}: {len(cpu) / 10:g} per order", "s CPU", [sum(cpu) / 10],
                       note="per order"))


def hub_spawn_alone(be, user: str) -> float:
    """The hub spawning a server with nobody else involved: POST, then ready."""
    be.hub.api("POST", f"users/{user}")
    started = time.time()
    be.hub.api("POST", f"users/{user}/server")
    wait(lambda: (be.hub.server(user) or {}).get("ready"), 120, step=0.02)
    took = time.time() - started
    be.hub.api("DELETE", f"users/{user}/server")
    return took


def hub_stop_alone(be, user: str) -> float:
    """The hub stopping a ready server with nobody else involved: DELETE, then the
    server gone from its API (what cleanup_whole waits for after our part)."""
    be.hub.api("POST", f"users/{user}")
    be.hub.api("POST", f"users/{user}/server")
    wait(lambda: (be.hub.server(user) or {}).get("ready"), 120, step=0.02)
    started = time.time()
    be.hub.api("DELETE", f"users/{user}/server")
    wait(lambda: be.hub.server(user) is None, 120, step=0.005)
    return time.time() - started


# -- bursts -----------------------------------------------------------------------------

class CpuMeter:
    """Busy share of both cores over an interval, from /proc/stat."""

    @staticmethod
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def __enter__(self) -> "CpuMeter":
        self.start = self.sample()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self.sample()
        busy, total = end[0] - self.start[0], end[1] - self.start[1]
        self.busy = busy / total if total else 0.0


def burst(report: Report, site: dict, size: int, first: int) -> None:
    from benchmarks.cases import rss_sampler
    from support.mailpath import BACKEND_USER
    import pwd

    be, journal = site["be"], site["journal"]
    students = list(range(first, first + size))
    before = {n: be.fe.state.students[n]["password"] for n in students}
    last = journal.last_id()
    stop, peak = threading.Event(), {}
    sampler = threading.Thread(target=rss_sampler,
                               args=(pwd.getpwnam(BACKEND_USER).pw_uid, stop, peak))
    sampler.start()
    try:
        _burst(report, site, size, students, before, last, peak)
    finally:
        stop.set()
        sampler.join()


def _burst(report: Report, site: dict, size: int, students: list[int], before: dict,
           last: int, peak: dict) -> None:
    be, journal = site["be"], site["journal"]
    with CpuMeter() as cpu:
        started = time.time()
        sent: dict[int, float] = {}

        def one(n: int) -> None:
            sent[n] = mail(be, f"CREATE {n} {CUSTOMER} b{n}@example.org", "WKSHP-Python101")

        threads = [threading.Thread(target=one, args=(n,)) for n in students]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait(lambda: len(journal.orders("CREATE", last)) >= size and all(
            be.fe.state.students[n]["password"] != before[n] for n in students), 900,
            step=0.05)
        elapsed = time.time() - started
    wait(lambda: journal.pending("hub") == 0, 300, step=0.1)
    all_ready = time.time() - started
    done = journal.orders("CREATE", last)
    failures = len([o for o in done if o[2] != "done"]) + size - len(done)
    puts = [len([p for p in be.fe.puts_for(f"student/{n}") if "password" in p])
            for n in students]
    lost, duplicated = puts.count(0), sum(1 for p in puts if p > 1)
    report.add(Row(f"burst_{size}: {size} CREATE mails at once, all done and reported",
                   "s", [elapsed], "<= 10" if size == 50 else "",
                   f"failures {failures}, lost {lost}, duplicated {duplicated}; CPU busy "
                   f"{cpu.busy:.0%}; peak RSS {peak.get('kb', 0) / 1024:.0f} MiB in "
                   f"{peak.get('procs', 0)} processes",
                   {"id": f"burst_{size}", "failures": failures, "lost": lost,
                    "duplicated": duplicated, "cpu_busy": cpu.busy,
                    "peak_rss_mib": peak.get("kb", 0) / 1024,
                    "all_servers_ready": all_ready}))
    report.add(Row(f"  burst_{size}: every server confirmed ready by the hub", "s",
                   [all_ready]))
    for name, values in phases(journal, done, sent).items():
        report.add(Row(f"  burst_{size} per order: {name}", "s", values))


def phases(journal: Journal, done: list[tuple], sent: dict[int, float]) -> dict:
    """Where each order of a burst spent its time, from its journal entry: the wait
    before the order's process had journaled the mail (postfix's queue and local
    concurrency, procmail, Python start and imports), its root step groups (sudo and
    the helper, the first one with their start), its frontend reports, the rest."""
    import json

    from benchmarks.cases import step_times

    out: dict[str, list[float]] = {"mail handed over -> journaled (postfix, procmail, "
                                   "Python start)": [], "root steps (sudo helper)": [],
                                   "frontend reports": [], "the rest of the order": []}
    for order_id, received, _outcome, duration, students in done:
        n = json.loads(students)[0]
        steps = step_times("".join(journal.log(order_id)))
        root = sum(v for k, v in steps.items() if "," in k or k in ROOT_STEPS)
        reports = sum(v for k, v in steps.items() if k.startswith("report_"))
        out["mail handed over -> journaled (postfix, procmail, Python start)"].append(
            received - sent.get(n, received))
        out["root steps (sudo helper)"].append(root)
        out["frontend reports"].append(reports)
        out["the rest of the order"].append((duration or 0) - root - reports)
    return out


ROOT_STEPS = {"ensure_account", "set_linux_password", "kill_processes", "wipe_home",
              "restore_skeleton", "ssh_key", "compile", "deliver_notebooks", "verify_home",
              "measure_completion"}


# -- batches ----------------------------------------------------------------------------

def reset_range(report: Report, site: dict, first: int, size: int) -> None:
    from benchmarks.cases import rss_sampler
    from support.mailpath import BACKEND_USER
    import pwd

    be, journal = site["be"], site["journal"]
    last = journal.last_id()
    stop, peak = threading.Event(), {}
    sampler = threading.Thread(target=rss_sampler,
                               args=(pwd.getpwnam(BACKEND_USER).pw_uid, stop, peak))
    sampler.start()
    started = time.time()
    try:
        mail(be, f"RESET {first},{first + size - 1} {RESET_CUSTOMER}", "WKSHP-Resettable")
        wait(lambda: journal.orders("RESET", last), 3600, step=0.05)
    finally:
        stop.set()
        sampler.join()
    elapsed = time.time() - started
    processes = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())
    order = journal.orders("RESET", last)
    outcome = order[0][2] if order else "not finished"
    size_mib = sum(f.stat().st_size for f in journal.db.parent.glob("journal.db*")) / 2**20
    rss = peak.get("kb", 0) / 1024
    report.add(Row(f"reset_{size}: RESET of a {size}-student range by mail", "s",
                   [elapsed], "<= 10" if size == 1000 else "",
                   f"outcome {outcome}; journal {size_mib:.0f} MiB; peak RSS of the "
                   f"backend user's processes {rss:.0f} MiB; {processes} processes on "
                   f"the machine", {"id": f"reset_{size}", "outcome": outcome,
                                    "journal_mib": size_mib, "peak_rss_mib": rss,
                                    "machine_processes": processes}))


def run(report: Report, times: int, only: set[str]) -> None:
    """The cases selected (ids or their groups: single, burst, reset)."""
    big = "reset_10000" in only
    high = LOW + (10000 if big else 1400) - 1
    with production(high) as site:
        if only & {"single", "time_to_password", "create_total", "server_ready",
                   "cleanup_total"}:
            single(report, site, times)
        if only & {"cleanup", "cleanup_report", "cleanup_whole"}:
            cleanups(report, site, times, LOW + 1310)
        if only & {"parallel", "parallel5_password"}:
            parallel5(report, site, times, LOW + 1340)
        if "root_side" in only:
            root_side(report, site, times, LOW + 1370)
        if "order_programs" in only:
            order_programs(report, site, LOW + 1385)
        report.header("issue 17: bursts of CREATE mails for different students")
        next_student = LOW + 20
        for size in (50, 200):
            if only & {"burst", f"burst_{size}"}:
                burst(report, site, size, next_student)
                next_student += size
        report.header("issue 17: batches (one RESET mail for a range)")
        if only & {"reset", "reset_1000"}:
            reset_range(report, site, LOW + 300, 1000)
        if big:
            reset_range(report, site, LOW, 10000)
