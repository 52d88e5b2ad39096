"""Running an order's plan: each student in isolation, a batch in chunks, then the
steps once for the whole order, and the outcome recorded.

One student: its lock, then its steps (executor.StudentRun). A range that starts with
new passwords (RESET) goes in chunks of up to `CHUNK` students: every lock of the
chunk, one `chpasswd` (one helper request) for all their new passwords, then each
student's other steps; a student whose lock or account fails fails alone. Reports of a batch are sent
side by side (reporting.Services). Last, once the journal has the outcome, the hub
calls are handed to the background confirmation (confirm.py).
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import EX_OK, EX_SOFTWARE, StepFailed, WodError
from wod_backend.execution.confirm import hand_over
from wod_backend.execution.executor import OrderContext, StudentRun, batch_tail
from wod_backend.execution.outcome import Progress, Result, StudentResult
from wod_backend.planning.plan import Plan, StudentPlan
from wod_backend.planning.step_kinds import StepKind
from wod_backend.remote.clients import Clients
from wod_backend.state import journal as jr
from wod_backend.state.locks import student_lock
from wod_backend.system import passwords
from wod_backend.privileged.request import StepsRequest
from wod_backend.system.student import Student

log = logging.getLogger(__name__)


def run_final_steps(ctx: OrderContext) -> None:
    """Steps once for the whole order, after every student (a range's capacity)."""
    for step in ctx.plan.final_steps:
        if step.kind is StepKind.REPORT_CAPACITY:
            ctx.services.workshop_capacity(ctx.plan.workshop.folder,
                                           len(ctx.plan.order.students),
                                           ctx.plan.frontend_id)
        else:
            raise StepFailed(f"internal: no executor for final step {step.name}")
        ctx.log(f"order: {step.name} ok")


# Students per batch chunk (the helper's largest batch): their locks are held together,
# one descriptor each, so the soft limit of open files is raised for a batch.
CHUNK = 1000


def _room_for_locks(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (
            want if hard == resource.RLIM_INFINITY else min(want, hard), hard))


def _failed_plan(st: Student, reason: str) -> StudentResult:
    log.warning("%s", reason)
    return StudentResult(st.number, jr.FAILED, reason, EX_SOFTWARE)


def _failed(sp: StudentPlan, exc: WodError) -> StudentResult:
    log.warning("%s", exc.reason)
    return StudentResult(sp.student, jr.FAILED, exc.reason, exc.exit_code)


def _student(ctx: OrderContext, sp: StudentPlan,
             prepared: Optional[Student] = None, tail: frozenset = frozenset()
             ) -> StudentResult:
    try:
        if prepared is not None:  # its lock is held by the chunk
            StudentRun(ctx, sp, prepared, tail).run()
        else:
            with student_lock(ctx.cfg.state_dir, sp.student, ctx.cfg.orders.lock_wait):
                StudentRun(ctx, sp).run()
        return StudentResult(sp.student, jr.DONE)
    except WodError as exc:
        return _failed(sp, exc)


def _chunk(ctx: OrderContext, sps: list[StudentPlan]) -> list[StudentResult]:
    """A chunk of a batch: every student's lock, one chpasswd for their new passwords,
    then each student's other steps."""
    out: dict[int, StudentResult] = {}
    tail = batch_tail(sps[0].steps) if sps else []
    with contextlib.ExitStack() as locks:
        ready: list[Student] = []
        for sp in sps:
            try:
                locks.enter_context(student_lock(ctx.cfg.state_dir, sp.student,
                                                 ctx.cfg.orders.lock_wait))
            except WodError as exc:
                out[sp.student] = _failed(sp, exc)
                continue
            ready.append(Student.of(ctx.cfg, ctx.plan.order, ctx.plan.meta, sp.student)
                         .with_password(passwords.generate(ctx.cfg.passwords)))
        started = time.monotonic()
        failures = _set_passwords(ctx, ready)
        took = time.monotonic() - started
        by_number = {st.number: st for st in ready}
        for sp in sps:
            if sp.student in out:
                continue
            why = failures.get(sp.student)
            if why:
                ctx.log(f"{sp.user}: set_linux_password FAILED: {why}")
                out[sp.student] = _failed(sp, StepFailed(f"{sp.user}: "
                                                         f"set_linux_password: {why}"))
                continue
            ctx.log(f"{sp.user}: new_password,set_linux_password ok ({took:.3f}s, one "
                    f"chpasswd for {len(ready)} students)")
            out[sp.student] = _student(ctx, sp, by_number[sp.student], frozenset(tail))
        _run_tail(ctx, tail, [by_number[sp.student] for sp in sps
                              if out[sp.student].outcome == jr.DONE], out)
    return [out[sp.student] for sp in sps]


def _run_tail(ctx: OrderContext, tail: list[StepKind], students: list[Student],
              out: dict[int, StudentResult]) -> None:
    """The chunk's eviction steps, for every student whose other steps went through."""
    if not tail or not students:
        return
    started = time.monotonic()
    name = ",".join(k.value for k in tail)
    failures: dict[int, Optional[str]]
    try:
        answer = ctx.ask(StepsRequest.of(students[0], tail, ctx.plan.meta.compile,
                                         batch=students))
    except WodError as exc:
        failures = {st.number: exc.reason for st in students}
    else:
        failures = {st.number: answer.failures.get(st.number) for st in students}
    took = time.monotonic() - started
    for st in students:
        why = failures.get(st.number)
        if why:
            ctx.log(f"{st.user}: {name} FAILED: {why}")
            out[st.number] = _failed_plan(st, f"{st.user}: {name}: {why}")
        else:
            ctx.log(f"{st.user}: {name} ok ({took:.3f}s, one request for "
                    f"{len(students)} students)")


def _set_passwords(ctx: OrderContext, students: list[Student]) -> dict[int, Optional[str]]:
    if not students:
        return {}
    answer = ctx.ask(StepsRequest.of(students[0], [StepKind.SET_LINUX_PASSWORD],
                                     ctx.plan.meta.compile, batch=students))
    return {st.number: answer.failures.get(st.number) for st in students}


def _students(ctx: OrderContext, progress: Optional[Progress]) -> list[StudentResult]:
    plan, out = ctx.plan, []
    if plan.batch_passwords:
        _room_for_locks(min(CHUNK, len(plan.students)))
        for i in range(0, len(plan.students), CHUNK):
            if progress is not None:
                progress(i, len(plan.students), plan.students[i].user)
            out += _chunk(ctx, list(plan.students[i:i + CHUNK]))
        return out
    for i, sp in enumerate(plan.students):
        if progress is not None:
            progress(i, len(plan.students), sp.user)
        out.append(_student(ctx, sp))
    return out


def execute(cfg: Config, plan: Plan, journal: jr.Journal, entry: int, started: float,
            clients: Clients, progress: Optional[Progress] = None) -> Result:
    """Run every student's steps and record the outcome."""
    ctx = OrderContext(cfg, plan, journal, entry, clients)
    try:
        students = _students(ctx, progress)
        if not any(s.outcome == jr.FAILED for s in students):
            try:
                run_final_steps(ctx)
            except WodError as exc:
                students.append(StudentResult(None, jr.FAILED, exc.reason, exc.exit_code))
        pending = 0
        if ctx._services is not None:
            ctx._services.drain()
            pending = ctx._services.pending()
    finally:
        ctx.close()
    hub_keys = ctx._services.hub_keys if ctx._services is not None else set()
    codes = [s.exit_code for s in students if s.outcome == jr.FAILED]
    failed = [s for s in students if s.outcome == jr.FAILED]
    outcome = jr.FAILED if failed else (jr.DONE_PENDING if pending else jr.DONE)
    reason = None
    if failed:
        reason = failed[0].reason if len(failed) == 1 else \
            f"{len(failed)} of {len(plan.students)} students failed"
    journal.update(entry, outcome=outcome, reason=reason,
                   duration=time.monotonic() - started)
    # Last, with every descriptor the order needed closed (the sudo helper's pipes):
    # the hub's spawns and stops are confirmed by a process that outlives this one.
    hand_over(cfg, entry, hub_keys)
    code = EX_OK if not codes else (codes[0] if len(set(codes)) == 1 else EX_SOFTWARE)
    return Result(outcome, exit_code=code, order=plan.order, plan=plan,
                  reason=reason, journal_id=entry, students=students)

