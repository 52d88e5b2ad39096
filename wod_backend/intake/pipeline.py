"""Intake: a mail or a command line becomes a journaled, validated, planned order.

The journal entry is written before anything is done, refusals included, and the raw
message is kept with it so that an order can be replayed. A dry run records nothing and
touches nothing: it only prints the plan.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, BinaryIO, Optional, Union

from wod_backend.config import Config
from wod_backend.errors import (EX_TEMPFAIL, BadOrder, Refused, TemporaryFailure,
                                UsageError, WodError)
from wod_backend.execution.outcome import Progress, Result
from wod_backend.intake import policy
from wod_backend.intake.mail import Envelope, order_from_envelope, parse_envelope, read_message
from wod_backend.order import (Order, parse_action, parse_customer, parse_students,
                               parse_workshop_name, user_name)
from wod_backend.planning.catalog import Catalog
from wod_backend.planning.plan import Plan, make_plan
from wod_backend.state import journal as jr
from wod_backend.state.files import in_maintenance
from wod_backend.state.locks import message_key, message_lock

if TYPE_CHECKING:
    from wod_backend.remote.clients import Clients


def plan_order(cfg: Config, order: Order, clients: "Clients",
               journal: Optional[jr.Journal] = None, entry: Optional[int] = None) -> Plan:
    """Validate and plan, with the workshop flags from the frontend when configured."""
    from wod_backend.intake.workshop_flags import workshop_flags

    catalog = Catalog(cfg)
    ws = catalog.get(order.folder)
    flags = workshop_flags(cfg, catalog, ws, order, clients)
    if journal is not None and entry is not None:
        journal.log(entry, f"workshop flags from {flags.source}")
        for note in flags.notes:
            journal.log(entry, f"warning: {note}")
    return make_plan(cfg, catalog, order, flags.meta, flags.frontend_id)


def _dry_run(cfg: Config, order: Order) -> Result:
    from wod_backend.remote.clients import Clients

    return Result(jr.PLANNED, order=order, plan=plan_order(cfg, order, Clients(cfg)))


def _run(cfg: Config, order: Order, journal: jr.Journal, entry: int, started: float,
         progress: Optional[Progress] = None) -> Result:
    # Imported here, not at the top: the executor with the system steps, Jinja2 and the
    # HTTP clients is ~75 ms of imports (measured) that a refused, duplicate or held mail
    # never needs; procmail starts one process per mail.
    from wod_backend.execution.order_run import execute
    from wod_backend.execution.gate import wait_for_cleanup
    from wod_backend.remote.clients import Clients

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
    return execute(cfg, plan, journal, entry, started, clients, progress)


def from_mail(cfg: Config, stream: BinaryIO, *, dry_run: bool = False,
              progress: Optional[Progress] = None) -> Result:
    """One mail, in this order: read, envelope, policy, order, duplicate, plan, run."""
    started = time.monotonic()
    if not dry_run and in_maintenance(cfg.state_dir):
        # `wod-backend maintenance on` (an upgrade): postfix keeps the mail and retries.
        raise TemporaryFailure("maintenance: orders are held, the mail stays queued")
    raw, too_large = read_message(stream, cfg.mail.max_bytes)
    if dry_run:
        if too_large:
            raise BadOrder(too_large)
        env = parse_envelope(raw)
        return _dry_run(cfg, order_from_envelope(env, cfg.students.min, cfg.students.max))
    journal = jr.Journal(cfg.state_dir)
    env = _envelope(journal, raw, too_large)
    key = message_key(env.message_id, env.subject, env.body_line)
    entry = journal.record("mail", subject=env.subject, message_id=env.message_id, raw=raw,
                           msgkey=key, sender=policy.sender_of(env))
    # Held for the whole order: a second delivery of this message waits, then sees it done.
    with message_lock(cfg.state_dir, key, cfg.orders.lock_wait):
        order = _admit(cfg, env, journal, entry, started, key)
        if isinstance(order, Result):
            return order  # refused by the policy, discarded
        since = 0.0 if env.message_id else time.time() - cfg.orders.duplicate_window
        earlier = journal.executed(key, since, exclude=entry)
        if earlier is not None:
            return _duplicate(env, order, journal, entry, earlier, started)
        return _run(cfg, order, journal, entry, started, progress)


def _envelope(journal: jr.Journal, raw: bytes, too_large: Optional[str]) -> Envelope:
    try:
        if too_large:
            raise BadOrder(too_large)
        return parse_envelope(raw)
    except BadOrder as exc:
        # However bad, a mail is journaled (at most max_bytes of it) with its reason.
        journal.record("mail", raw=raw, outcome=jr.REFUSED, reason=exc.reason)
        raise


def probe(cfg: Config, stream: BinaryIO) -> Result:
    """doctor's probe (mail to the backend user's `+probe` address): journaled as a
    probe with its subject, never parsed as an order, never run; exit 0."""
    started = time.monotonic()
    raw, _too_large = read_message(stream, cfg.mail.max_bytes)
    try:
        env: Optional[Envelope] = parse_envelope(raw)
    except BadOrder:
        env = None
    journal = jr.Journal(cfg.state_dir)
    entry = journal.record("probe", subject=env.subject if env else None,
                           message_id=env.message_id if env else None, outcome=jr.PROBE,
                           reason="probe: journaled, nothing run",
                           sender=policy.sender_of(env) if env else None)
    journal.update(entry, duration=time.monotonic() - started)
    return Result(jr.PROBE, reason="probe: journaled, nothing run", journal_id=entry)


def _duplicate(env: Envelope, order: Order, journal: jr.Journal, entry: int, earlier: int,
               started: float) -> Result:
    """The same message again (postfix re-delivering): executed once. A different order
    reusing an executed Message-ID is refused as such, not silently dropped."""
    journal.update(entry, order=order.summary())
    first_raw = journal.raw(earlier)
    first = _content(parse_envelope(first_raw)) if first_raw is not None else None
    if first is not None and first != _content(env):
        reason = (f"Message-ID {env.message_id} was used by order {earlier} for another "
                  f"order ({first[0]} / {first[1]}): refused")
        journal.update(entry, outcome=jr.REFUSED, reason=reason,
                       duration=time.monotonic() - started)
        raise BadOrder(reason)
    reason = f"same message as order {earlier}: executed once"
    journal.update(entry, outcome=jr.DUPLICATE, reason=reason,
                   duration=time.monotonic() - started)
    return Result(jr.DUPLICATE, reason=reason, journal_id=entry)


def _content(env: Envelope) -> tuple[str, str]:
    return " ".join((env.subject or "").split()), env.body_line or ""


def _admit(cfg: Config, env: Envelope, journal: jr.Journal, entry: int, started: float,
           msgkey: Optional[str] = None) -> Union[Order, Result]:
    """The policy (unless an operator retries: msgkey None), then the order. A refusal
    is journaled; the policy's is discarded (a Result) or bounced per intake.refused."""
    try:
        if msgkey is not None:
            policy.check_sender(cfg, env)
            policy.check_rate(cfg, env, journal, entry)
        order = order_from_envelope(env, cfg.students.min, cfg.students.max)
        if msgkey is not None:
            policy.check_signature(cfg, env, order, journal, msgkey)
        return order
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
    who = user_name(nums[0]) if len(nums) == 1 else f"students {nums[0]}-{nums[-1]}"
    return f"{text} {who} customer {customer}"


def retry(cfg: Config, entry_id: int, progress: Optional[Progress] = None) -> Result:
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
        order = _admit(cfg, env, journal, entry, started)
        if isinstance(order, Result):
            return order
        return _run(cfg, order, journal, entry, started, progress)
    if not (old.action and old.workshop and old.students and old.customer is not None):
        raise UsageError(f"order {entry_id} was refused before it was understood: "
                         f"nothing to retry")
    students = (str(old.students[0]) if len(old.students) == 1
                else f"{old.students[0]}-{old.students[-1]}")
    entry = journal.record("retry", subject=old.subject, retry_of=entry_id)
    order = order_from_args(cfg, old.action, old.workshop, students, old.customer,
                            internal=True)
    return _run(cfg, order, journal, entry, started, progress)


def order_from_args(cfg: Config, action: str, workshop: str, students: str,
                    customer: str, internal: bool = False) -> Order:
    act = parse_action(action, internal)
    numbers, is_range = parse_students(students, cfg.students.min, cfg.students.max)
    return Order(action=act, students=numbers, customer=parse_customer(customer),
                 workshop=parse_workshop_name(workshop), source="cli", is_range=is_range,
                 subject=f"{act.value} {students} {customer}")


def _subject(action: str, students: str, customer: str, workshop: str) -> str:
    """How an order that came without a mail reads in `history`."""
    return f"{action} {students} {customer} / {workshop}"[:200]


def from_cli(cfg: Config, action: str, workshop: str, students: str, customer: str,
             *, dry_run: bool = False, progress: Optional[Progress] = None) -> Result:
    started = time.monotonic()
    if dry_run:
        order = order_from_args(cfg, action, workshop, students, customer)
        return _dry_run(cfg, order)
    journal = jr.Journal(cfg.state_dir)
    entry = journal.record("cli", subject=_subject(action, students, customer, workshop))
    try:
        order = order_from_args(cfg, action, workshop, students, customer)
    except BadOrder as exc:
        journal.update(entry, outcome=jr.REFUSED, reason=exc.reason,
                       duration=time.monotonic() - started)
        raise
    return _run(cfg, order, journal, entry, started, progress)


def from_backend(cfg: Config, order: Order, source: str, evidence: list[str],
                 progress: Optional[Progress] = None) -> Result:
    """An order the backend gives itself (`sweep`'s EVICT, `expire`'s CLEANUP):
    journaled with its source and the evidence for it, then run like any other."""
    started = time.monotonic()
    journal = jr.Journal(cfg.state_dir)
    entry = journal.record(source, subject=_subject(
        order.action.value, ",".join(str(n) for n in order.students), order.customer,
        order.workshop))
    for line in evidence:
        journal.log(entry, line)
    return _run(cfg, order, journal, entry, started, progress)
