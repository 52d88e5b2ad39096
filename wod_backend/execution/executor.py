"""Executing one student's plan: its steps in order, through one handler per kind.

The order's students, batches and final steps are execution/order_run.py's. Every step
kind has one handler: root's in system/root_steps.py (run in this process when it
may, else in groups through the sudo helper), the backend user's in HANDLERS below. A
failing step stops that student's order with its reason; the other students of a batch
go on (run.py). What was done is logged into the order's journal entry step by step, so
`history` and `retry` know where an order stopped. Every step is idempotent, so a
retry converges to the end state of a clean run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from wod_backend.config import Config
from wod_backend.errors import StepFailed, WodError
from wod_backend.execution.reporting import Services
from wod_backend.planning.plan import Plan, StudentPlan
from wod_backend.planning.step_kinds import ROOT_KINDS, Step, StepKind
from wod_backend.privileged.request import Answer, Request, StepsRequest
from wod_backend.privileged.root_side import RootSide, root_side
from wod_backend.remote.clients import Clients
from wod_backend.remote.ldap import LdapConnection
from wod_backend.state import journal as jr
from wod_backend.planning.appliances import managed
from wod_backend.system import appliance_link, automation, passwords, student_vars
from wod_backend.system import root_steps
from wod_backend.system.student import Host, Student

log = logging.getLogger(__name__)


@dataclass
class OrderContext:
    """What all students of one order share: config, plan, connections, journal."""

    cfg: Config
    plan: Plan
    journal: jr.Journal
    entry: int
    clients: Clients
    host: Host = field(init=False)
    _ldap: Optional[LdapConnection] = None
    _services: Optional[Services] = None
    root: RootSide = field(init=False)
    # One connection per appliance for the whole order (system/appliance_link.py).
    _links: dict[tuple[str, int], appliance_link.Link] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.host = Host(self.cfg, self.plan.workshop, self.plan.meta, self.log)
        # The helper serves the content tree this order planned with (content update).
        pin = {self.plan.workshop.origin: str(self.plan.workshop.path.parent)}
        self.root = root_side(self.cfg, self.host, pin)

    def log(self, text: str) -> None:
        self.journal.log(self.entry, text)

    @property
    def ldap(self) -> LdapConnection:
        if self._ldap is None:
            if self.cfg.ldap is None:
                raise StepFailed(f"workshop {self.plan.workshop.folder} needs LDAP but no "
                               f"ldap section is configured")
            self._ldap = LdapConnection(self.cfg.ldap)
        return self._ldap

    @property
    def services(self) -> Services:
        if self._services is None:
            # A batch sends its reports side by side (per key in order); one student's
            # are sent inline, the quickest way to the frontend.
            workers = self.cfg.orders.report_concurrency if len(self.plan.students) > 1 \
                else 0
            from wod_backend.execution.confirm import hand_over

            self._services = Services(self.cfg, self.journal, self.entry, self.clients,
                                      workers, lambda keys: hand_over(self.cfg, self.entry,
                                                                      keys))
        return self._services

    def link(self, student: Student) -> appliance_link.Link:
        folder = self.plan.workshop.folder
        app = managed(self.cfg, self.plan.meta, folder)
        if app is None or student.appliance is None:
            raise StepFailed(f"workshop {folder} has no appliance set up by the backend")
        key = (student.appliance, app.port)
        if key not in self._links:
            self._links[key] = appliance_link.Link(
                self.cfg, appliance_link.target(self.cfg, app, student.appliance, folder))
        return self._links[key]

    def close(self) -> None:
        if self._ldap is not None:
            self._ldap.close()
        for link in self._links.values():
            link.close()
        self.root.close()

    def ask(self, request: Request) -> Answer:
        """Root's side answers (its log lines go to the journal), or its refusal is
        raised."""
        answer = self.root.ask(request)
        for line in answer.log:
            self.log(line)
        return answer.raise_for_error()


# The password steps a batch does for all its students at once (one chpasswd).
BATCHED = frozenset({StepKind.NEW_PASSWORD, StepKind.SET_LINUX_PASSWORD})


def batch_tail(steps: tuple) -> list[StepKind]:
    """A batch's trailing eviction steps (kill, wipe, verify), run for all its students
    in one request after their other steps: one pass over /proc per step, not per
    student."""
    from wod_backend.privileged.request import BATCH_TAIL

    tail: list[StepKind] = []
    for step in reversed(steps):
        if step.kind.value not in BATCH_TAIL:
            break
        tail.insert(0, step.kind)
    return tail


class StudentRun:
    """One student's steps; the student value is renewed when a password is made.
    `prepared`: a batch already made and set this student's password."""

    def __init__(self, ctx: OrderContext, sp: StudentPlan,
                 prepared: Optional[Student] = None, tail: frozenset = frozenset()):
        """`tail`: the trailing root steps the batch runs for all its students at once."""
        self.ctx, self.sp = ctx, sp
        student = prepared or Student.of(ctx.cfg, ctx.plan.order, ctx.plan.meta,
                                         sp.student)
        self.student = student.with_private(
            student_vars.load(ctx.cfg, ctx.plan.workshop.folder, sp.student))
        self.skip = (BATCHED if prepared is not None else frozenset()) | tail
        self.results: dict[str, Any] = {}

    def run(self) -> None:
        try:
            self._run_steps()
        except WodError:
            self._end_processes_anyway()
            raise

    def _run_steps(self) -> None:
        steps = [st for st in self.sp.steps if st.kind not in self.skip]
        i = 0
        while i < len(steps):
            if steps[i].kind in ROOT_KINDS:
                # Consecutive root steps: one sudo run for the group, or in-process.
                j = i
                while j < len(steps) and steps[j].kind in ROOT_KINDS:
                    j += 1
                self._root_group([st.kind for st in steps[i:j]])
                i = j
                continue
            step = steps[i]
            self._timed(step.name, lambda: HANDLERS[step.kind](self, step))
            i += 1

    def _root_group(self, kinds: list[StepKind]) -> None:
        groups = [kinds] if self.ctx.root.groups_steps else [[k] for k in kinds]
        for group in groups:
            request = StepsRequest.of(self.student, group, self.ctx.plan.meta.compile)
            self._timed(",".join(k.value for k in group), lambda: self.results.update(
                self.ctx.ask(request).results))

    def _end_processes_anyway(self) -> None:
        """A failed step never leaves the student's processes running when the order
        was to end them (an eviction): they are ended before the failure is reported."""
        if not any(st.kind is StepKind.KILL_PROCESSES for st in self.sp.steps) or \
                "killed" in self.results:
            return
        try:
            self._root_group([StepKind.KILL_PROCESSES])
            self.ctx.log(f"{self.sp.user}: kill_processes ok (after the failure)")
        except WodError as exc:
            self.ctx.log(f"{self.sp.user}: kill_processes FAILED too: {exc.reason}")

    def _timed(self, name: str, call: Callable[[], Any]) -> None:
        started = time.monotonic()
        try:
            call()
        except WodError as exc:
            self.ctx.log(f"{self.sp.user}: {name} FAILED: {exc.reason}")
            exc.reason = f"{self.sp.user}: {name}: {exc.reason}"
            raise
        self.ctx.log(f"{self.sp.user}: {name} ok ({time.monotonic() - started:.3f}s)")


# -- the backend user's own steps: one handler per kind (root's: system/root_steps.py) -----

def new_password(run: StudentRun, step: Step) -> None:
    run.student = run.student.with_password(passwords.generate(run.ctx.cfg.passwords))


def render_notebooks(run: StudentRun, step: Step) -> None:
    # In memory, before anything changes: a content defect changes nothing.
    root_steps.render(run.ctx.host, run.student)


def set_ldap_password(run: StudentRun, step: Step) -> None:
    run.ctx.ldap.set_password(run.student.user, run.student.need_password())


def hook(run: StudentRun, step: Step) -> None:
    assert step.hook is not None
    if step.kind is StepKind.HOOK_CREATE:
        student_vars.ensure_hook_dir(run.ctx.cfg)
    automation.run_hook(run.ctx.host, run.student, step.hook)
    if step.kind is StepKind.HOOK_CREATE:  # it may have written the student's variables
        run.student = run.student.with_private(
            student_vars.load(run.ctx.cfg, run.ctx.plan.workshop.folder, run.sp.student))


def appliance_account(run: StudentRun, step: Step) -> None:
    # Reachable, the host key the recorded one, sudo, the student's account: its home.
    run.results["appliance_home"] = run.ctx.link(run.student).home(run.student.user)


def appliance_password(run: StudentRun, step: Step) -> None:
    # A CREATE sets the student's new password there; leaving sets one nobody knows.
    password = run.student.need_password() if run.student.action == "CREATE" else \
        passwords.generate(run.ctx.cfg.passwords)
    run.ctx.link(run.student).set_password(run.student.user, password)


def appliance_home(run: StudentRun, step: Step) -> None:
    run.ctx.link(run.student).call("home", run.student.user)


def appliance_key(run: StudentRun, step: Step) -> None:
    public = run.results.get("public_key")
    if not isinstance(public, str) or not public.startswith("ssh-"):
        raise StepFailed("internal: no student key made before the appliance takes it")
    run.ctx.link(run.student).call("key", run.student.user, stdin=public.encode())


def appliance_revoke(run: StudentRun, step: Step) -> None:
    run.ctx.link(run.student).call("revoke", run.student.user)


def report_password(run: StudentRun, step: Step) -> None:
    run.ctx.services.student(run.student.dbid, password=run.student.need_password())


def report_student(assigned: bool) -> Callable[[StudentRun, Step], None]:
    def handler(run: StudentRun, step: Step) -> None:
        run.ctx.services.student(run.student.dbid, assigned=assigned)
    return handler


def report_customer(**fields: bool) -> Callable[[StudentRun, Step], None]:
    def handler(run: StudentRun, step: Step) -> None:
        run.ctx.services.customer(run.student.customer, **fields)
    return handler


def report_completion(run: StudentRun, step: Step) -> None:
    run.ctx.services.customer(run.student.customer,
                              completionPercentage=int(run.results["completion"]))


def hub(operation: str) -> Callable[[StudentRun, Step], None]:
    def handler(run: StudentRun, step: Step) -> None:
        run.ctx.services.hub(run.student.user, operation)
    return handler


HANDLERS: dict[StepKind, Callable[[StudentRun, Step], None]] = {
    StepKind.NEW_PASSWORD: new_password,
    StepKind.RENDER_NOTEBOOKS: render_notebooks,
    StepKind.SET_LDAP_PASSWORD: set_ldap_password,
    StepKind.HOOK_CREATE: hook,
    StepKind.HOOK_POST_COPY: hook,
    StepKind.HOOK_CLEANUP: hook,
    StepKind.HOOK_RESET: hook,
    StepKind.REPORT_PASSWORD: report_password,
    StepKind.REPORT_STUDENT_FREE: report_student(False),
    StepKind.REPORT_STUDENT_ASSIGNED: report_student(True),
    StepKind.REPORT_CUSTOMER_ACTIVE: report_customer(active=True),
    StepKind.REPORT_CUSTOMER_INACTIVE: report_customer(active=False),
    StepKind.REPORT_CUSTOMER_CLEANED: report_customer(cleaned=True),
    StepKind.REPORT_COMPLETION: report_completion,
    StepKind.APPLIANCE_ACCOUNT: appliance_account,
    StepKind.APPLIANCE_PASSWORD: appliance_password,
    StepKind.APPLIANCE_HOME: appliance_home,
    StepKind.APPLIANCE_KEY: appliance_key,
    StepKind.APPLIANCE_REVOKE: appliance_revoke,
    StepKind.HUB_ENSURE_USER: hub("ensure_user"),
    StepKind.HUB_START: hub("start"),
    StepKind.HUB_STOP: hub("stop"),
}
