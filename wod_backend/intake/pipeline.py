"""Intake: a mail or a command line becomes a journaled, validated, planned order.

The journal entry is written before anything is done, refusals included, and the raw
message is kept with it so that an order can be replayed. A dry run records nothing and
touches nothing: it only prints the plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Optional

from wod_backend.state import journal as jr
from wod_backend.intake import policy
from wod_backend.planning.catalog import Catalog
from wod_backend.config import Config
from wod_backend.errors import (EX_OK, EX_TEMPFAIL, BadOrder, Refused, UsageError,
                                WodError)
from wod_backend.state.locks import message_key, message_lock
from wod_backend.intake.mail import Envelope, order_from_envelope, parse_envelope, read_message
from wod_backend.order import (Order, parse_action, parse_customer, parse_students,
                               parse_workshop_name)
from wod_backend.planning.plan import Plan, make_plan

if TYPE_CHECKING:
    from wod_backend.execution.reporting import Clients


@dataclass(frozen=True)
class Result:
    """What became of an order: printed as text or JSON by the CLI."""

    outcome: str
    exit_code: int = EX_OK
    order: Optional[dict[str, Any]] = None
    plan: Optional[Plan] = None
    reason: Optional[str] = None
    journal_id: Optional[int] = None
    students: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.plan.as_dict() if self.plan else self.order or {})
        out.update(outcome=self.outcome, reason=self.reason, journal_id=self.journal_id)
        if self.students:
            out["results"] = self.students
        return out

    def text(self) -> str:
        if self.plan is not None and self.outcome == jr.PLANNED:
            return plan_text(self.plan)
        head = self.outcome + (f": {self.reason}" if self.reason else "")
        if self.order:
            o = self.order
            nums = o["students"]
            who = f"student{nums[0]}" if len(nums) == 1 else f"students {nums[0]}-{nums[-1]}"
            head = f"{o['action']} {o['workshop']} {who}: {head}"
        lines = [head]
        if len(self.students) > 1 or any(s["outcome"] != jr.DONE for s in self.students):
            counts: dict[str, int] = {}
            for s in self.students:
                counts[s["outcome"]] = counts.get(s["outcome"], 0) + 1
            lines.append(f"  {'STUDENT':12}  {'OUTCOME':8}  REASON")
            for s in self.students:
                name = f"student{s['student']}" if s["student"] is not None else "(order)"
                lines.append(f"  {name:12}  {s['outcome']:8}  {s.get('reason') or ''}")
            lines.append("  " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
        return "\n".join(lines)


def plan_text(plan: Plan) -> str:
    o = plan.order
    lines = [f"{o.action.value} {o.workshop} (folder {plan.workshop.folder}, "
             f"{plan.workshop.origin}, mode {o.mode.value}) customer {o.customer}"]
    for sp in plan.students:
        lines.append(f"  {sp.user} (home {sp.home}, frontend id {sp.dbid}):")
        lines += [f"    {i}. {st.name}" + (f"  [{st.detail}]" if st.detail else "")
                  for i, st in enumerate(sp.steps, 1)]
    for st in plan.final_steps:
        lines.append(f"  then: {st.name}  [{st.detail}]")
    return "\n".join(lines)


def plan_order(cfg: Config, order: Order, clients: "Clients",
               journal: Optional[jr.Journal] = None, entry: Optional[int] = None) -> Plan:
    """Validate and plan, with the workshop flags from the frontend when configured."""
    from wod_backend.execution.reporting import workshop_flags

    catalog = Catalog(cfg)
    ws = catalog.get(order.folder)
    flags = workshop_flags(cfg, catalog, ws, order, clients)
    if journal is not None and entry is not None:
        journal.log(entry, f"workshop flags from {flags.source}")
        for note in flags.notes:
            journal.log(entry, f"warning: {note}")
    return make_plan(cfg, catalog, order, flags.meta, flags.frontend_id)


def _dry_run(cfg: Config, order: Order) -> Result:
    from wod_backend.execution.reporting import Clients

    return Result(jr.PLANNED, order=order.summary(), plan=plan_order(cfg, order, Clients(cfg)))


def _run(cfg: Config, order: Order, journal: jr.Journal, entry: int,
         started: float) -> Result:
    from wod_backend.execution.reporting import Clients, wait_for_cleanup

    journal.update(entry, order=order.summary())
    clients = Clients(cfg)
    try:
        plan = plan_order(cfg, order, clients, journal, entry)
        wait_for_cleanup(cfg, journal, order, cfg.orders.cleanup_wait, clients)
    except WodError as exc:
        outcome = jr.FAILED if exc.exit_code == EX_TEMPFAIL else jr.REFUSED
        journal.update(entry, outcome=outcome, reason=exc.reason,
                       duration=time.monotonic() - started)
        raise
    journal.update(entry, outcome=jr.RUNNING)
    from wod_backend.execution.executor import execute

    return execute(cfg, plan, journal, entry, started, clients)


def from_mail(cfg: Config, stream: BinaryIO, *, dry_run: bool = False) -> Result:
    started = time.monotonic()
    raw, too_large = read_message(stream, cfg.mail.max_bytes)
    if dry_run:
        if too_large:
            raise BadOrder(too_large)
        env = parse_envelope(raw)
        return _dry_run(cfg, order_from_envelope(env, cfg.students.min, cfg.students.max))
    journal = jr.Journal(cfg.state_dir)
    try:
        if too_large:
            raise BadOrder(too_large)
        env = parse_envelope(raw)
    except BadOrder as exc:
        # However bad, a mail is journaled (at most max_bytes of it) with its reason.
        journal.record("mail", raw=raw, outcome=jr.REFUSED, reason=exc.reason)
        raise
    key = message_key(env.message_id, env.subject, env.body_line)
    entry = journal.record("mail", subject=env.subject, message_id=env.message_id, raw=raw,
                           msgkey=key, sender=policy.sender_of(env))
    # Held for the whole order: a second delivery of this message waits, then sees it done.
    with message_lock(cfg.state_dir, key, cfg.orders.lock_wait):
        since = 0.0 if env.message_id else time.time() - cfg.orders.duplicate_window
        earlier = journal.executed(key, since, exclude=entry)
        if earlier is not None:
            return _duplicate(cfg, env, journal, entry, earlier, started)
        return _from_envelope(cfg, env, journal, entry, started, key)


def _duplicate(cfg: Config, env: Envelope, journal: jr.Journal, entry: int, earlier: int,
               started: float) -> Result:
    """The same message again (postfix re-delivering): executed once. A different order
    reusing an executed Message-ID is refused as such, not silently dropped."""
    try:
        journal.update(entry, order=order_from_envelope(
            env, cfg.students.min, cfg.students.max).summary())
    except BadOrder:
        pass
    first_raw = journal.raw(earlier)
    first = parse_envelope(first_raw) if first_raw is not None else None
    if first is not None and (_content(first) != _content(env)):
        reason = (f"Message-ID {env.message_id} was used by order {earlier} for another "
                  f"order ({_content(first)[0]} / {_content(first)[1]}): refused")
        journal.update(entry, outcome=jr.REFUSED, reason=reason,
                       duration=time.monotonic() - started)
        raise BadOrder(reason)
    reason = f"same message as order {earlier}: executed once"
    journal.update(entry, outcome=jr.DUPLICATE, reason=reason,
                   duration=time.monotonic() - started)
    return Result(jr.DUPLICATE, reason=reason, journal_id=entry)


def _content(env: Envelope) -> tuple[str, str]:
    return " ".join((env.subject or "").split()), env.body_line or ""


def _from_envelope(cfg: Config, env: Envelope, journal: jr.Journal, entry: int,
                   started: float, msgkey: Optional[str] = None) -> Result:
    """Policy (unless an operator retries: msgkey None), parse, then run."""
    try:
        if msgkey is not None:
            policy.check_sender(cfg, env)
            policy.check_rate(cfg, env, journal.conn, entry)
        order = order_from_envelope(env, cfg.students.min, cfg.students.max)
        if msgkey is not None:
            policy.check_signature(cfg, env, order, journal.conn, msgkey)
    except Refused as exc:
        journal.update(entry, outcome=jr.REFUSED, reason=exc.reason,
                       duration=time.monotonic() - started)
        if cfg.intake.refused == "bounce":
            raise
        # Discarded: a bounce to a forged sender would be backscatter.
        return Result(jr.REFUSED, reason=exc.reason, journal_id=entry)
    except BadOrder as exc:
        journal.update(entry, outcome=jr.REFUSED, reason=exc.reason,
                       duration=time.monotonic() - started)
        raise
    return _run(cfg, order, journal, entry, started)


def retry_preview(cfg: Config, entry_id: int) -> str:
    """The order a retry would run, read from what will run: the stored raw mail (the
    journal's summary columns are not what a retry executes), else the stored fields."""
    journal = jr.Journal(cfg.state_dir)
    old = journal.get(entry_id)
    if old is None:
        raise UsageError(f"no order {entry_id} in the journal")
    raw = journal.raw(entry_id)
    if raw is None:
        if not (old.action and old.workshop and old.students):
            return "nothing (refused before it was understood)"
        nums, text = tuple(old.students), f"{old.action} {old.workshop}"
        customer = old.customer
    else:
        try:
            order = order_from_envelope(parse_envelope(raw), cfg.students.min,
                                        cfg.students.max)
        except BadOrder as exc:
            return f"nothing: the stored mail is refused ({exc.reason})"
        nums, text = order.students, f"{order.action.value} {order.workshop}"
        customer = order.customer
    who = f"student{nums[0]}" if len(nums) == 1 else f"students {nums[0]}-{nums[-1]}"
    return f"{text} {who} customer {customer}"


def retry(cfg: Config, entry_id: int) -> Result:
    """Run a journaled order again (a mail from its raw message, a CLI order from its
    fields), as a new journal entry that points at the old one."""
    started = time.monotonic()
    journal = jr.Journal(cfg.state_dir)
    old = journal.get(entry_id)
    if old is None:
        raise UsageError(f"no order {entry_id} in the journal")
    raw = journal.raw(entry_id)
    if raw is not None:
        env = parse_envelope(raw)
        entry = journal.record("retry", subject=env.subject, message_id=env.message_id,
                               raw=raw, retry_of=entry_id)
        return _from_envelope(cfg, env, journal, entry, started)
    if not (old.action and old.workshop and old.students and old.customer is not None):
        raise UsageError(f"order {entry_id} was refused before it was understood: "
                         f"nothing to retry")
    students = (str(old.students[0]) if len(old.students) == 1
                else f"{old.students[0]}-{old.students[-1]}")
    entry = journal.record("retry", subject=old.subject, retry_of=entry_id)
    order = order_from_args(cfg, old.action, old.workshop, students, old.customer)
    return _run(cfg, order, journal, entry, started)


def order_from_args(cfg: Config, action: str, workshop: str, students: str,
                    customer: str) -> Order:
    act = parse_action(action)
    numbers, is_range = parse_students(students, cfg.students.min, cfg.students.max)
    return Order(action=act, students=numbers, customer=parse_customer(customer),
                 workshop=parse_workshop_name(workshop), source="cli", is_range=is_range,
                 subject=f"{act.value} {students} {customer}")


def from_cli(cfg: Config, action: str, workshop: str, students: str, customer: str,
             *, dry_run: bool = False) -> Result:
    started = time.monotonic()
    if dry_run:
        order = order_from_args(cfg, action, workshop, students, customer)
        return _dry_run(cfg, order)
    journal = jr.Journal(cfg.state_dir)
    subject = f"{action} {students} {customer} / {workshop}"[:200]
    entry = journal.record("cli", subject=subject)
    try:
        order = order_from_args(cfg, action, workshop, students, customer)
    except BadOrder as exc:
        journal.update(entry, outcome=jr.REFUSED, reason=exc.reason,
                       duration=time.monotonic() - started)
        raise
    return _run(cfg, order, journal, entry, started)
