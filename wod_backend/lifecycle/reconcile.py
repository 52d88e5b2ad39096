"""`wod-backend reconcile [--fix]`: the backend, the hub and the frontend brought back in
agreement after an outage, a dead outbox item or a hand-made change.

Per student it compares what the journal's last order says the student should be
(assigned and running, or free and stopped) with the Linux account and home, the
hub's server, the outbox (reports and hub calls dead or stuck), the student's
processes and the frontend's customer row (the only frontend row the API can read),
and lists each disagreement with its likely cause. `--fix` applies the backend's side
only: dead or stuck outbox items sent again, a server stopped or started to match the
journal. It never writes a frontend value the journal does not already hold: a
customer the frontend changed on its own is listed, not overwritten.
"""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from wod_backend.config import Config
from wod_backend.errors import SendError, WodError
from wod_backend.state.seats import FINISHED, holds_seat
from wod_backend.order import Seat, user_name
from wod_backend.planning.catalog import Catalog
from wod_backend.remote.clients import Clients, hub_servers
from wod_backend.state import journal as jr
from wod_backend.state.outbox import DEAD, PENDING, Outbox
from wod_backend.system.kill import pids_by_uid

STUCK = 600.0  # a pending item this old: its flushes keep failing


@dataclass
class Finding:
    student: int
    what: str
    cause: str
    fix: Optional[str] = None  # what --fix does about it (None: nothing it may do)
    fixed: Optional[str] = None  # what --fix did
    outbox_ids: list[int] = field(default_factory=list)
    key: Optional[str] = None  # the outbox key the fix sends
    hub: Optional[str] = None  # "start" or "stop"

    def as_dict(self) -> dict[str, Any]:
        return {"student": self.student, "what": self.what, "cause": self.cause,
                "fix": self.fix, "fixed": self.fixed}


def expected(catalog: Catalog, e: Optional[jr.Entry]) -> tuple[bool, bool]:
    """(assigned, server running) as the journal's last finished order leaves the
    student: only a CREATE leaves the server running."""
    assigned = holds_seat(catalog, e, FINISHED)
    return assigned, assigned and e is not None and e.action == "CREATE"


def find(cfg: Config, students: list[int]) -> list[Finding]:
    journal = jr.Journal(cfg.state_dir)
    outbox = Outbox(journal.conn, cfg.state_dir)
    catalog = Catalog(cfg)
    last = journal.last_orders(students)
    hub = hub_servers(cfg)
    procs = _processes(cfg, students)
    clients = Clients(cfg)
    customers: dict[str, Optional[dict]] = {}
    out: list[Finding] = []
    for n in students:
        e = last.get(n)
        assigned, running = expected(catalog, e)
        out += _outbox_findings(cfg, outbox, n)
        out += _host_findings(cfg, n, e, assigned, procs)
        if hub is not None and hub != {}:
            out += _hub_findings(n, e, running, hub.get(user_name(n), "no user"))
        if cfg.frontend is not None and e is not None and e.customer not in (None, "0"):
            customer = str(e.customer)
            if customer not in customers:
                customers[customer] = _customer(clients, customer)
            out += _frontend_findings(n, e, customers[customer])
    return out


def _processes(cfg: Config, students: list[int]) -> dict[int, Optional[int]]:
    """Per student with an account, how many processes it runs (one pass over /proc);
    None for a student without one."""
    if not cfg.students.manage_accounts:
        return {}
    uids: dict[int, int] = {}
    for n in students:
        try:
            uids[n] = pwd.getpwnam(user_name(n)).pw_uid
        except KeyError:
            continue
    running = pids_by_uid(set(uids.values()))
    return {n: len(running.get(uids[n], [])) if n in uids else None for n in students}


def _outbox_findings(cfg: Config, outbox: Outbox, n: int) -> list[Finding]:
    seat = Seat.of(cfg.students, n)
    keys = {f"student:{seat.dbid}", f"hub:{seat.user}"}
    out = []
    for item in outbox.items(None, keys):
        call = f"{item.method} {item.path}"
        if item.status == DEAD:
            out.append(Finding(n, f"{item.service} call {call} is dead in the outbox after "
                               f"{item.attempts} attempt(s)", f"{item.last_error or '?'}",
                               "send it again", outbox_ids=[item.id], key=item.key))
        elif item.status == PENDING and time.time() - item.created > STUCK:
            out.append(Finding(n, f"{item.service} call {call} pending for "
                               f"{(time.time() - item.created) / 60:.0f} min",
                               f"{item.last_error or 'not sent yet'}", "send it now",
                               outbox_ids=[item.id], key=item.key))
    return out


def _host_findings(cfg: Config, n: int, e: Optional[jr.Entry], assigned: bool,
                   processes: dict[int, Optional[int]]) -> list[Finding]:
    if not cfg.students.manage_accounts:
        return []
    procs = processes.get(n)
    if procs is None:
        return [Finding(n, "no Linux account", "removed by hand, or never made (`students "
                        "ensure`)")] if assigned else []
    out = []
    home = Seat.of(cfg.students, n).home
    if assigned and not os.path.isdir(home):
        out.append(Finding(n, f"assigned ({e.action if e else '?'} {e.id if e else ''}) "
                           f"but {home} is missing", "removed by hand: a CREATE rebuilds it"))
    if procs and not assigned:
        out.append(Finding(n, f"free, yet {procs} process(es) of {user_name(n)} run",
                           "a login or job that outlived its CLEANUP: `sweep` or the next "
                           "order ends them"))
    return out


def _hub_findings(n: int, e: Optional[jr.Entry], running: bool, state: str
                  ) -> list[Finding]:
    last = f"{e.action} {e.id}" if e else "no order"
    # A stopped server of an assigned student is normal: the idle culler or the
    # student's logout stopped it, and their next login starts it (never restarted
    # here). A start given up shows as a dead outbox item.
    if running and state == "no user":
        return [Finding(n, f"no hub user although the last order ({last}) started a server",
                        "the hub lost its database, or its start was given up",
                        "start it", hub="start")]
    if not running and state in ("running", "pending"):
        return [Finding(n, f"server {state} although the last order ({last}) stopped it",
                        "its stop was lost (a hub outage) or the student started it again",
                        "stop it", hub="stop")]
    return []


def _customer(clients: Clients, customer: str) -> Optional[dict]:
    try:
        return clients.frontend.customer(customer)
    except (SendError, WodError, ValueError):
        return None


def _frontend_findings(n: int, e: jr.Entry, row: Optional[dict]) -> list[Finding]:
    if row is None:
        return [Finding(n, f"customer {e.customer} could not be read from the frontend",
                        "frontend unreachable, or the customer deleted")]
    if e.action == "CREATE" and e.outcome in FINISHED and \
            row.get("active") is False:
        return [Finding(n, f"customer {e.customer} inactive on the frontend after CREATE "
                           f"{e.id}", "its report was lost, or the frontend expired it "
                           "(a CLEANUP should follow; `expire` does it past the grace)")]
    if e.action == "CLEANUP" and e.outcome in FINISHED and \
            row.get("cleaned") is False:
        return [Finding(n, f"customer {e.customer} not cleaned on the frontend after "
                           f"CLEANUP {e.id}", "its report was lost (see the outbox)")]
    return []


def fix(cfg: Config, findings: list[Finding]) -> None:
    """The backend's side of each finding that has one; `fixed` says what happened."""
    from wod_backend.execution.reporting import make_sender

    journal = jr.Journal(cfg.state_dir)
    outbox = Outbox(journal.conn, cfg.state_dir)
    send = make_sender(cfg, Clients(cfg, patient=True))
    for f in findings:
        if f.fix is None:
            continue
        if f.hub is not None:
            user = user_name(f.student)
            f.key = f"hub:{user}"
            if f.hub == "start":
                outbox.enqueue(None, "hub", f.key, "ensure_user", user)
            item = outbox.enqueue(None, "hub", f.key, f.hub, user)
            outbox.supersede(f.key, ("start", "stop"), item)
            f.outbox_ids = [item]
        else:
            outbox.requeue_dead(f.outbox_ids)
        assert f.key is not None
        report = outbox.flush(send, {f.key}, wait=5.0)
        if all(i in report.sent for i in f.outbox_ids):
            f.fixed = "done"
        else:
            errors = [str(i.last_error) for i in outbox.items(None, {f.key})
                      if i.id in f.outbox_ids]
            f.fixed = f"not yet: {'; '.join(errors)[:200]}"
