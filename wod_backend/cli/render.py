"""Everything the CLI prints as text: results, plans, tables, the batch progress bar.

Domain modules return values; this module alone turns them into lines for a person.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

from typing import TYPE_CHECKING

from wod_backend.order import user_name
from wod_backend.state import journal as jr

if TYPE_CHECKING:  # values only read here: their modules are the commands' to import
    from wod_backend.execution.outcome import Result
    from wod_backend.host.check import Check
    from wod_backend.host.hostconf import Change
    from wod_backend.ops.contentcheck import Problem
    from wod_backend.ops.status import StatusRow
    from wod_backend.ops.views import WorkshopRow
    from wod_backend.planning.plan import Plan


def who(numbers: list[int]) -> str:
    return user_name(numbers[0]) if len(numbers) == 1 else \
        f"students {numbers[0]}-{numbers[-1]}"


def result(res: Result) -> str:
    if res.plan is not None and res.outcome == jr.PLANNED:
        return plan(res.plan)
    head = res.outcome + (f": {res.reason}" if res.reason else "")
    if res.order:
        o = res.order
        head = f"{o.action.value} {o.workshop} {who(list(o.students))}: {head}"
    lines = [head]
    if len(res.students) > 1 or any(s.outcome != jr.DONE for s in res.students):
        counts: dict[str, int] = {}
        for s in res.students:
            counts[s.outcome] = counts.get(s.outcome, 0) + 1
        lines.append(f"  {'STUDENT':12}  {'OUTCOME':8}  REASON")
        for s in res.students:
            name = user_name(s.student) if s.student is not None else "(order)"
            lines.append(f"  {name:12}  {s.outcome:8}  {s.reason or ''}")
        lines.append("  " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return "\n".join(lines)


def plan(p: Plan) -> str:
    o = p.order
    lines = [f"{o.action.value} {o.workshop} (folder {p.workshop.folder}, "
             f"{p.workshop.origin}, mode {o.mode.value}) customer {o.customer}"]
    for sp in p.students:
        lines.append(f"  {sp.user} (home {sp.home}, frontend id {sp.dbid}):")
        lines += [f"    {i}. {st.name}" + (f"  [{st.detail}]" if st.detail else "")
                  for i, st in enumerate(sp.steps, 1)]
    for st in p.final_steps:
        lines.append(f"  then: {st.name}  [{st.detail}]")
    return "\n".join(lines)


def _span(nums: list[int]) -> str:
    if not nums:
        return "-"
    return str(nums[0]) if len(nums) == 1 else f"{nums[0]}-{nums[-1]}"


def history(entries: list[jr.Entry]) -> str:
    if not entries:
        return "no orders yet"
    lines = [f"{'ID':>5}  {'RECEIVED':19}  {'SRC':4}  {'ACTION':7}  {'STUDENTS':9}  "
             f"{'CUST':6}  {'WORKSHOP':22}  {'OUTCOME':16}  REASON"]
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.received))
        lines.append(f"{e.id:>5}  {when}  {e.source:4}  {e.action or '-':7}  "
                     f"{_span(e.students):9}  {e.customer or '-':6}  "
                     f"{e.workshop or '-':22}  {e.shown_outcome:16}  {e.reason or ''}")
    return "\n".join(lines)


def workshops(rows: list[WorkshopRow]) -> str:
    if not rows:
        return "no workshops"
    lines = [f"{'FOLDER':28}  {'FROM':8}  {'RESET':5}  {'LDAP':5}  {'SEATS':5}  NAME"]
    for r in rows:
        origin = r.origin + ("*" if r.shadowed_private else "")
        if r.error is not None:
            lines.append(f"{r.folder:28}  {origin:8}  {r.error}")
            continue
        lines.append(f"{r.folder:28}  {origin:8}  {str(r.reset).lower():5}  "
                     f"{str(r.ldap).lower():5}  {r.capacity:5}  {r.name}")
    if any(r.shadowed_private for r in rows):
        lines.append("* a private copy exists too; the public one wins")
    return "\n".join(lines)


def outbox(items: list[dict[str, Any]]) -> str:
    if not items:
        return "outbox empty"
    lines = [f"{'ID':>6}  {'ORDER':>5}  {'STATUS':7}  {'TRIES':>5}  {'CALL':34}  BODY / ERROR"]
    for i in items:
        lines.append(f"{i['id']:>6}  {i['order'] or '-':>5}  {i['status']:7}  "
                     f"{i['attempts']:>5}  {i['call'][:34]:34}  {i['body'] or ''} "
                     f"{i['last_error'] or ''}")
    return "\n".join(lines)


def status(data: list[StatusRow], refused: Optional[dict[str, int]] = None,
           banned: Optional[dict[str, float]] = None) -> str:
    lasts = [(f"#{r.last_order} {r.last_action} {r.last_outcome}"
              if r.last_order else "-") for r in data]
    width = max([len("LAST ORDER"), *map(len, lasts)])
    lines = [f"{'STUDENT':12}  {'STATE':8}  {'WORKSHOP':20}  {'CUST':6}  "
             f"{'LAST ORDER':{width}}  {'PENDING':7}  HUB"]
    for r, last in zip(data, lasts):
        lines.append(f"{r.user:12}  {r.state:8}  {r.workshop or '-':20}  "
                     f"{r.customer or '-':6}  {last:{width}}  {r.reports_pending:7}  "
                     f"{r.hub or '-'}" + (f" (hub {r.hub_call})" if r.hub_call else ""))
    if refused:
        lines.append("refused in the last 24 h (see history):")
        lines += [f"  {n:5}  {reason}" for reason, n in
                  sorted(refused.items(), key=lambda kv: -kv[1])]
    if banned:
        lines.append("hub logins refused after repeated failures:")
        lines += [f"  {ip}  ({left / 60:.0f} min left)" for ip, left in sorted(banned.items())]
    return "\n".join(lines)


def check(c: Check) -> str:
    line = f"[{c.status:4}] {c.name}: {c.detail}"
    return line + (f"\n         fix: {c.fix}" if c.fix else "")


def change(c: Change) -> str:
    return f"{c.what}: {c.detail}"


def problem(p: Problem) -> str:
    return f"{p.severity}: {p.workshop}: {p.path}: {p.message}"


class ProgressBar:
    """A progress bar on stderr for batches, only when stderr is a terminal."""

    def __init__(self, stream: Optional[TextIO] = None):
        self.stream = stream or sys.stderr
        self.shown = False

    def __call__(self, position: int, total: int, label: str) -> None:
        if total < 2 or not self.stream.isatty():
            return
        width = 30
        filled = width * position // total
        self.stream.write(f"\r[{'#' * filled}{' ' * (width - filled)}] "
                          f"{position + 1}/{total} {label:<14}")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


# One-line texts, by name, so that every text the CLI prints is written here.
SAYINGS = {
    "exported": "{count} file(s) into {target}",
    "converted": "{fmt} of {count} notebook(s), beside them",
    "convert_failed": "not converted: {why}",
    "pruned": "{count} backup(s) older than {days:g} days removed",
    "restored": "{count} file(s) restored into {folder}/",
    "journal_kept": "journal.keep_days is not set: everything is kept",
    "journal_pruned": "{count} order(s) older than {days:g} days lost their raw mail and "
                      "addresses",
    "switched": "switched to {release}",
    "warnings": " ({count} warning(s))",
    "switched_back": "switched back to {release}",
    "no_expiry": "students.expiry_grace is not set: nothing expires",
    "hub_running": "jupyterhub running, pid {pid}",
    "hub_stopped": "jupyterhub stopped",
    "hub_not_running": "jupyterhub was not running",
    "service_running": "{what}, pid {pid}",
    "worker_running": "worker running, pid {pid}",
    "worker_stopped": "worker stopped",
    "worker_not_running": "no worker was running",
    "sent_test": "sent {count} mail(s) to {to} via {via}",
    "wrote_demo": "wrote {path}\ntry: wod-backend --config {path} create WKSHP-Python101 1",
    "wrote_example": "wrote {path}\nedit it, provide the secret files it names, then as "
                     "root: wod-backend --config {path} setup",
    "valid": "{path}: valid",
    "changed": "changed {count} thing(s)",
    "maintenance_on": "maintenance on: order mails are held",
    "maintenance_off": "maintenance off",
    "will_run": "order {order} will run: {what}",
    "report_sent": "mailed to {to}: {subject}",
    "report_due": "would mail to {to}: {subject}",
    "report_not_due": "nothing to mail: no new red state (the daily report: once a day)",
    "forgot": "{count} recorded host key(s) of {address} removed: setup records the key "
              "it offers now",
}


# Why a command failed: one line on stderr, prefixed with the program's name.
FAILURES = {
    "aborted": "aborted",
    "usage": "usage: {text}",
    "refused": "{text}",
    "temporary": "temporary failure: {kind}: {text}",
    "database": "temporary failure: state database: {text}",
    "internal": "internal error: {kind}: {text} (traceback in the log)",
}


def failure(what: str, **values: Any) -> str:
    return "wod-backend: " + FAILURES[what].format(**values)


def say(name: str, **values: Any) -> str:
    return SAYINGS[name].format(**values)


def appliances(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no appliance workshop: none is set up by the backend"
    lines = [f"{'WORKSHOP':22} {'ADDRESS':16} {'PORT':>5} {'ACCOUNT':12} {'STUDENTS':12} "
             f"HOST KEY"]
    for r in rows:
        lines.append(f"{r['workshop']:22} {r['address']:16} {r['port']:>5} "
                     f"{r['account']:12} {r['students']:12} {r['host_key']}")
    return "\n".join(lines)


def changes(items: list[Change]) -> str:
    return "\n".join(change(c) for c in items) or \
        "host matches the configuration: nothing to do"


def mails(raw: list[bytes]) -> str:
    return "\n".join(m.decode() for m in raw)


def migration(path: Any, mapped: list[str], notes: list[str]) -> str:
    return "\n".join([f"wrote {path}", *(f"  mapped {line}" for line in mapped),
                      *(f"  to do: {line}" for line in notes)])


def backups(rows: list[dict[str, Any]]) -> str:
    return "\n".join(f"{r['id']}  student{r.get('student')} customer {r.get('customer')} "
                     f"{r.get('workshop')} {r.get('action')}  {len(r.get('files', []))} "
                     f"file(s), {r.get('bytes', 0) / 2**20:.1f} MB" for r in rows) \
        or "no backups"


def sweep(report: Any) -> str:
    lines = [f"{report.processes} process(es) of {report.students} student(s) checked in "
             f"{report.seconds:.2f}s"]
    lines += [f"  student{o.proc.student}: {o.evidence()}" for o in report.offences]
    lines += [f"  student{n}: EVICT {outcome}" for n, outcome in report.evicted.items()]
    if report.confined:
        lines.append(f"  {sum(report.confined.values())} process(es) of "
                     f"{len(report.confined)} student(s) placed in their limits' groups")
    lines += [f"  student{n}: disk {what}" for n, what in report.disk.items()]
    return "\n".join(lines)


def expired(done: list[Any]) -> str:
    return "\n".join(f"student{x.student}: {x.workshop} for customer {x.customer}, past "
                     f"{x.hours:g} h: {x.outcome or 'due'}" for x in done) or "nobody is due"


def findings(items: list[Any]) -> str:
    return "\n".join(f"student{f.student}: {f.what}\n    likely: {f.cause}" +
                     (f"\n    fix: {f.fix}" if f.fix else "\n    fix: none from the backend") +
                     (f" -> {f.fixed}" if f.fixed else "") for f in items) \
        or "backend, hub and frontend agree"


def accounts(report: Any) -> str:
    counts = ", ".join(f"{k} {len(v)}" for k, v in report.as_dict().items()
                       if k != "conflicts" and v)
    return (f"{counts or 'nothing to do'}, conflicts {len(report.conflicts)}"
            + "".join(f"\n  {c}" for c in report.conflicts))


def flushed(report: Any) -> str:
    return (f"sent {len(report.sent)}, still queued {len(report.failed)} key(s), refused "
            f"{len(report.dead)}" + (f", {len(report.busy)} key(s) being sent by another "
                                     f"process" if report.busy else ""))
