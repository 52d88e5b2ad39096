"""Executing a plan: each student's steps in order, each student in isolation.

Every step name of `plan.py` maps to one `step_*` method below, which calls the module
owning that system. A failing step stops that student's order with its reason; the
other students of a batch go on. What was done is logged into the order's journal
entry step by step, so `history` and `retry` know where an order stopped. Every step
is idempotent, so a retry converges to the end state of a clean run.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from wod_backend.state import journal as jr
from wod_backend.planning.catalog import Catalog, workshop_variables
from wod_backend.config import Config
from wod_backend.errors import EX_OK, EX_SOFTWARE, StepFailed, WodError
from wod_backend.order import Action
from wod_backend.planning.plan import Plan, Step, StudentPlan
from wod_backend.state.locks import student_lock
from wod_backend.privileged.helper import SYSTEM_STEPS

log = logging.getLogger(__name__)


@dataclass
class OrderContext:
    """What all students of one order share: config, plan, connections, journal."""

    cfg: Config
    plan: Plan
    journal: Optional[jr.Journal]  # None in the privileged helper: it answers its log
    entry: int
    direct: bool = False  # run system steps in this process even when not root
    variables: Optional[dict[str, Any]] = None
    lines: list[str] = field(default_factory=list)
    clients: Any = None  # services.Clients: the order's frontend and hub connections
    _ldap: Any = None
    _services: Any = None
    _system: Any = None

    def log(self, text: str) -> None:
        if self.journal is None:
            self.lines.append(text)
        else:
            self.journal.log(self.entry, text)

    @property
    def system(self):  # type: ignore[no-untyped-def]
        """The sudo runner, or None when system steps run in this process."""
        if self._system is None and not self.direct:
            from wod_backend.privileged.helper import SudoSystem, use_sudo

            self._system = SudoSystem(self.cfg) if use_sudo(self.cfg) else False
        return self._system or None

    @property
    def ldap(self):  # type: ignore[no-untyped-def]
        if self._ldap is None:
            from wod_backend.remote.ldap import LdapConnection

            if self.cfg.ldap is None:
                raise StepFailed(f"workshop {self.plan.workshop.folder} needs LDAP but no "
                                 f"ldap section is configured")
            self._ldap = LdapConnection(self.cfg.ldap)
        return self._ldap

    @property
    def services(self):  # type: ignore[no-untyped-def]
        if self._services is None:
            from wod_backend.execution.reporting import Services

            assert self.journal is not None
            self._services = Services(self.cfg, self.journal, self.entry, self.clients)
        return self._services

    def workshop_variables(self) -> dict[str, Any]:
        if self.variables is None:
            self.variables = workshop_variables(self.cfg, Catalog(self.cfg),
                                                self.plan.workshop.folder)
        return self.variables

    def close(self) -> None:
        if self._ldap is not None:
            self._ldap.close()


class StudentRun:
    """One student's steps; state that steps hand on (the new password) lives here."""

    def __init__(self, ctx: OrderContext, sp: StudentPlan):
        self.ctx, self.sp, self.cfg = ctx, sp, ctx.cfg
        self.order = ctx.plan.order
        self.password: Optional[str] = None
        self.rendered: Optional[dict[str, bytes]] = None
        self.results: dict[str, Any] = {}
        self._ids: Optional[tuple[Optional[int], Optional[int]]] = None

    # -- helpers ------------------------------------------------------------------------
    @property
    def ids(self) -> tuple[Optional[int], Optional[int]]:
        """(uid, gid) that the student's files belong to; (None, None) without accounts."""
        if self._ids is None:
            if self.cfg.students.manage_accounts:
                from wod_backend.system.accounts import account_ids

                self._ids = account_ids(self.cfg, self.sp.student)
            else:
                self._ids = (None, None)
        return self._ids

    @property
    def appliance(self) -> Optional[str]:
        from wod_backend.planning.appliances import target

        return target(self.cfg, self.ctx.plan.meta, self.ctx.plan.workshop.folder,
                      self.sp.student)

    def need_password(self) -> str:
        if self.password is None:
            raise StepFailed("internal: no new password generated before it is used")
        return self.password

    def run(self) -> None:
        try:
            self._run_steps()
        except WodError:
            self._end_processes_anyway()
            raise

    def _end_processes_anyway(self) -> None:
        """A failed step never leaves the student's processes running when the order
        was to end them (an eviction): they are ended before the failure is reported."""
        if not any(st.name == "kill_processes" for st in self.sp.steps) or \
                self.results.get("killed") is not None:
            return
        try:
            if self.ctx.system is not None:
                self.results.update(self.ctx.system.run(self, ["kill_processes"]))
            else:
                self.step_kill_processes(Step("kill_processes"))
            self.ctx.log(f"{self.sp.user}: kill_processes ok (after the failure)")
        except WodError as exc:
            self.ctx.log(f"{self.sp.user}: kill_processes FAILED too: {exc.reason}")

    def _run_steps(self) -> None:
        steps = list(self.sp.steps)
        i = 0
        while i < len(steps):
            system = self.ctx.system
            if system is not None and steps[i].name in SYSTEM_STEPS:
                # One sudo run for each group of consecutive system steps.
                j = i
                while j < len(steps) and steps[j].name in SYSTEM_STEPS:
                    j += 1
                group = [st.name for st in steps[i:j]]
                self._timed(",".join(group), lambda: self.results.update(
                    system.run(self, group)))
                i = j
                continue
            step = steps[i]
            method = getattr(self, "step_" + step.name, None)
            if method is None:
                raise StepFailed(f"internal: no executor for step {step.name}")
            self._timed(step.name, lambda: method(step))
            i += 1

    def _timed(self, name: str, call: Any) -> None:
        started = time.monotonic()
        try:
            call()
        except WodError as exc:
            self.ctx.log(f"{self.sp.user}: {name} FAILED: {exc.reason}")
            exc.reason = f"{self.sp.user}: {name}: {exc.reason}"
            raise
        self.ctx.log(f"{self.sp.user}: {name} ok ({time.monotonic() - started:.3f}s)")

    # -- passwords ----------------------------------------------------------------------
    def step_new_password(self, step: Step) -> None:
        from wod_backend.system.passwords import generate

        self.password = generate(self.cfg.passwords)

    def step_ensure_account(self, step: Step) -> None:
        from wod_backend.system.accounts import ensure

        report = ensure(self.cfg, [self.sp.student])
        if report.conflicts:
            raise StepFailed(report.conflicts[0])

    def step_set_linux_password(self, step: Step) -> None:
        from wod_backend.system.passwords import set_linux_passwords

        self.ids  # the account must exist and be ours
        set_linux_passwords([(self.sp.user, self.need_password())])

    def step_set_ldap_password(self, step: Step) -> None:
        self.ctx.ldap.set_password(self.sp.user, self.need_password())

    # -- home ---------------------------------------------------------------------------
    def step_wipe_home(self, step: Step) -> None:
        from wod_backend.system.homes import wipe_home

        wipe_home(self.sp.home, *self.ids, self.cfg.students.home_mode)

    def step_restore_skeleton(self, step: Step) -> None:
        from wod_backend.system.homes import restore_skeleton

        restore_skeleton(self.sp.home, Catalog(self.cfg).skeletons(), *self.ids,
                         self.cfg.students.home_mode)

    def step_ssh_key(self, step: Step) -> None:
        from wod_backend.system.homes import install_ssh_key

        install_ssh_key(self.sp.home, self.sp.user, *self.ids, self.cfg.students.home_mode)

    def step_render_notebooks(self, step: Step) -> None:
        from wod_backend.system.delivery import render_templates
        from wod_backend.system.templating import student_context

        context = student_context(
            self.ctx.workshop_variables(), self.sp.student, self.need_password(),
            self.ctx.plan.workshop.folder, self.order.mode.value, self.order.customer,
            self.appliance, self.cfg.inventory_hostname)
        self.rendered = render_templates(self.ctx.plan.workshop.path, context)

    def step_deliver_notebooks(self, step: Step) -> None:
        from wod_backend.system.delivery import deliver

        if self.rendered is None:  # in the privileged helper: render here
            self.step_render_notebooks(step)
        assert self.rendered is not None
        deliver(self.ctx.plan.workshop.path, self.rendered, self.sp.home,
                self.order.workshop, *self.ids, self.cfg.students.home_mode)

    def step_kill_processes(self, step: Step) -> None:
        from wod_backend.system.kill import kill_user_processes

        uid, _gid = self.ids
        if uid is not None:
            self.results["killed"] = kill_user_processes(uid,
                                                         self.cfg.students.kill_grace_seconds)

    def expected_entries(self) -> set[str]:
        """The top-level names a home holds after this action: none after an eviction;
        after a CREATE the skeleton's, the SSH key's, JupyterLab's, the workshop folder
        and the compiled tools (hooks run as the backend user: they cannot add any)."""
        if self.order.action is not Action.CREATE:
            return set()
        names = {".ssh", ".jupyter", self.order.workshop}
        for skeleton in Catalog(self.cfg).skeletons():
            names.update(os.listdir(skeleton))
        for script in self.ctx.plan.meta.compile:
            names.add(script.rsplit(".", 1)[0] if "." in script else script + ".x")
        return names

    def step_verify_home(self, step: Step) -> None:
        """No process of the student is left, and the home holds only what the action
        delivered: anything else (written by a process that outlived the wipe) goes."""
        from wod_backend.system.homes import open_home
        from wod_backend.system.kill import kill_user_processes, pids_of

        uid, _gid = self.ids
        if uid is not None and pids_of(uid):
            came_back = kill_user_processes(uid, 0)
            self.ctx.log(f"{self.sp.user}: {came_back} process(es) came back: ended")
        expected = self.expected_entries()
        with open_home(self.sp.home, *self.ids, self.cfg.students.home_mode) as home:
            extra = sorted(set(home.entries()) - expected)
            for name in extra:
                home.remove(name)
        if extra:
            self.ctx.log(f"{self.sp.user}: removed what the action did not deliver: "
                         f"{', '.join(extra[:10])}")

    def step_measure_completion(self, step: Step) -> None:
        from wod_backend.system.completion import completion

        self.results["completion"] = completion(self.ctx.plan.workshop.path, self.sp.home,
                                                self.order.workshop)

    # -- automation (hooks.py, automation.py) -------------------------------------------
    def _hooks(self, step: Step) -> None:
        from wod_backend.system.automation import run_hook

        assert step.hook is not None
        run_hook(self, step.hook)

    step_hook_create = step_hook_post_copy = step_hook_cleanup = step_hook_reset = _hooks

    def step_compile(self, step: Step) -> None:
        from wod_backend.system.automation import compile_scripts

        compile_scripts(self)

    # -- reports and the hub (services.py) ----------------------------------------------
    def step_report_password(self, step: Step) -> None:
        self.ctx.services.student(self.sp, password=self.need_password())

    def step_report_student_free(self, step: Step) -> None:
        self.ctx.services.student(self.sp, assigned=False)

    def step_report_student_assigned(self, step: Step) -> None:
        self.ctx.services.student(self.sp, assigned=True)

    def step_report_customer_active(self, step: Step) -> None:
        self.ctx.services.customer(self.order.customer, active=True)

    def step_report_customer_inactive(self, step: Step) -> None:
        self.ctx.services.customer(self.order.customer, active=False)

    def step_report_customer_cleaned(self, step: Step) -> None:
        self.ctx.services.customer(self.order.customer, cleaned=True)

    def step_report_completion(self, step: Step) -> None:
        self.ctx.services.customer(self.order.customer,
                                   completionPercentage=int(self.results["completion"]))

    def step_hub_ensure_user_server(self, step: Step) -> None:
        self.ctx.services.hub(self.sp.user, "ensure_user")

    def step_hub_start_server(self, step: Step) -> None:
        self.ctx.services.hub(self.sp.user, "start")

    def step_hub_stop_server(self, step: Step) -> None:
        self.ctx.services.hub(self.sp.user, "stop")


class Progress:
    """A progress bar on stderr for batches, only when stderr is a terminal."""

    def __init__(self, total: int):
        import sys

        self.total, self.count = total, 0
        self.stream = sys.stderr
        self.on = total > 1 and self.stream.isatty()

    def show(self, label: str) -> None:
        self.count += 1
        if self.on:
            width = 30
            filled = width * (self.count - 1) // self.total
            self.stream.write(f"\r[{'#' * filled}{' ' * (width - filled)}] "
                              f"{self.count}/{self.total} {label:<14}")
            self.stream.flush()

    def done(self) -> None:
        if self.on:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


def run_final_steps(ctx: OrderContext) -> None:
    for step in ctx.plan.final_steps:
        if step.name == "report_capacity":
            if ctx.plan.frontend_id is None:
                raise StepFailed(f"workshop {ctx.plan.workshop.folder} has no frontend id")
            ctx.services.workshop_capacity(ctx.plan.workshop.folder,
                                           len(ctx.plan.order.students),
                                           ctx.plan.frontend_id)
        else:
            raise StepFailed(f"internal: no executor for final step {step.name}")
        ctx.log(f"order: {step.name} ok")


def execute(cfg: Config, plan: Plan, journal: jr.Journal, entry: int,
            started: float, clients: Any = None) -> "Any":
    """Run every student's steps and record the outcome; returns an intake.Result."""
    from wod_backend.intake.pipeline import Result

    ctx = OrderContext(cfg, plan, journal, entry, clients=clients)
    students, codes = [], []
    try:
        progress = Progress(len(plan.students))
        for sp in plan.students:
            progress.show(sp.user)
            try:
                with student_lock(cfg.state_dir, sp.student, cfg.orders.lock_wait):
                    StudentRun(ctx, sp).run()
                students.append({"student": sp.student, "outcome": jr.DONE})
            except WodError as exc:
                log.warning("%s", exc.reason)
                students.append({"student": sp.student, "outcome": jr.FAILED,
                                 "reason": exc.reason})
                codes.append(exc.exit_code)
        progress.done()
        if not codes:
            try:
                run_final_steps(ctx)
            except WodError as exc:
                codes.append(exc.exit_code)
                students.append({"student": None, "outcome": jr.FAILED,
                                 "reason": exc.reason})
        pending = ctx._services.pending() if ctx._services is not None else 0
    finally:
        ctx.close()
    failed = [s for s in students if s["outcome"] == jr.FAILED]
    outcome = jr.FAILED if failed else (jr.DONE_PENDING if pending else jr.DONE)
    reason = None
    if failed:
        reason = failed[0]["reason"] if len(failed) == 1 else \
            f"{len(failed)} of {len(plan.students)} students failed"
    journal.update(entry, outcome=outcome, reason=reason,
                   duration=time.monotonic() - started)
    code = EX_OK if not codes else (codes[0] if len(set(codes)) == 1 else EX_SOFTWARE)
    return Result(outcome, exit_code=code, order=plan.order.summary(), plan=plan,
                  reason=reason, journal_id=entry, students=students)
