"""Planning: an order and the catalog in, the steps each student gets out.

Pure: no root, no network, no writes. `--dry-run` prints exactly this plan, and the
executor (`actions.py`) runs exactly these steps, so what an operator previews is what
happens. The step lists follow CONTRACT.md section 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from wod_backend.planning.catalog import Catalog, Workshop, WorkshopMeta
from wod_backend.config import Config
from wod_backend.errors import BadOrder, ConfigError
from wod_backend.planning.hooks import Hook, Phase, find_hooks
from wod_backend.order import Action, Order


@dataclass(frozen=True)
class Step:
    name: str
    detail: str = ""
    hook: Optional[Hook] = None

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "detail": self.detail}


@dataclass(frozen=True)
class StudentPlan:
    student: int
    user: str
    home: Path
    dbid: int
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Plan:
    order: Order
    workshop: Workshop
    meta: WorkshopMeta
    students: tuple[StudentPlan, ...]
    final_steps: tuple[Step, ...]  # once for the whole order, after every student
    hooks: dict[Phase, tuple[Hook, ...]]
    frontend_id: Optional[int] = None  # the workshop's id in the frontend

    def as_dict(self) -> dict:
        out = self.order.summary()
        out["folder"] = self.workshop.folder
        out["origin"] = self.workshop.origin
        out["steps"] = [{"student": s.student, "user": s.user, "home": str(s.home),
                         "steps": [st.as_dict() for st in s.steps]} for s in self.students]
        out["final_steps"] = [st.as_dict() for st in self.final_steps]
        return out


def user_name(n: int) -> str:
    return f"student{n}"


def _hook_steps(hooks: tuple[Hook, ...]) -> list[Step]:
    return [Step(f"hook_{h.phase.value.replace('-', '_')}", f"{h.origin} {h.kind} {h.path}",
                 h) for h in hooks]


def _password_steps(cfg: Config, meta: WorkshopMeta) -> list[Step]:
    steps = [Step("new_password")]
    if cfg.students.manage_accounts:
        steps.append(Step("set_linux_password"))
    if meta.ldap:
        steps.append(Step("set_ldap_password"))
    steps.append(Step("report_password", "PUT student password"))
    return steps


def _kill(cfg: Config) -> list[Step]:
    return [Step("kill_processes")] if cfg.students.manage_accounts else []


def _evict_steps(cfg: Config) -> list[Step]:
    # Processes end first: one left running would write into the home after its wipe.
    return [Step("report_student_free", "PUT student assigned=false"), *_kill(cfg),
            Step("wipe_home"), Step("verify_home", "empty, no process")]


def _hub(cfg: Config, what: str) -> list[Step]:
    return [Step(f"hub_{what}_server")]


# Customer 0 is how admin tools order: there is no such customer in the frontend (it
# answers 400), so nothing is reported about it.
NO_CUSTOMER = "0"
CUSTOMER_REPORTS = ("report_customer_", "report_completion")


def available(cfg: Config, steps: list[Step], customer: str = NO_CUSTOMER) -> tuple[Step, ...]:
    """Drop the reports and hub calls of services this backend does not have, and the
    customer reports of an order without a frontend customer."""
    return tuple(st for st in steps
                 if not (st.name.startswith("report_") and cfg.frontend is None)
                 and not (st.name.startswith(CUSTOMER_REPORTS) and customer == NO_CUSTOMER)
                 and not (st.name.startswith("hub_") and cfg.jupyterhub is None))


def student_steps(cfg: Config, order: Order, meta: WorkshopMeta,
                  hooks: dict[Phase, tuple[Hook, ...]]) -> list[Step]:
    a = order.action
    if a is Action.CREATE:
        steps = [Step("ensure_account")] if cfg.students.manage_accounts else []
        # Rendered in memory before anything changes: a content defect changes nothing.
        steps += [Step("new_password"), Step("render_notebooks")]
        steps += _password_steps(cfg, meta)[1:]
        steps += [*_kill(cfg), Step("wipe_home"), Step("restore_skeleton"), Step("ssh_key")]
        if meta.compile:
            steps.append(Step("compile", " ".join(meta.compile)))
        steps += _hook_steps(hooks[Phase.CREATE])
        steps.append(Step("deliver_notebooks", f"{order.folder} mode {order.mode.value}"))
        steps += _hook_steps(hooks[Phase.POST_COPY])
        steps.append(Step("verify_home", "only what was delivered, no process"))
        steps.append(Step("report_customer_active", "PUT customer active=true"))
        steps += _hub(cfg, "ensure_user") + _hub(cfg, "start")
        return steps
    if a is Action.CLEANUP:
        steps = _hook_steps(hooks[Phase.CLEANUP])
        steps += [Step("measure_completion"),
                  Step("report_completion", "PUT customer completionPercentage")]
        steps += _hub(cfg, "stop")
        steps += _password_steps(cfg, meta)
        if meta.reset:
            # The seat stays taken until the RESET; said outright, as the reference
            # backend did, so the frontend agrees whichever way it got here.
            steps += [Step("report_student_assigned", "PUT student assigned=true"),
                      Step("report_customer_inactive", "PUT customer active=false")]
        else:
            steps += _evict_steps(cfg)
        steps.append(Step("report_customer_cleaned", "PUT customer cleaned=true"))
        return steps
    if a is Action.RESET:
        steps = _password_steps(cfg, meta)
        steps += _hook_steps(hooks[Phase.RESET])
        return steps + _evict_steps(cfg)
    # PURGE
    steps = _hub(cfg, "stop") + _password_steps(cfg, meta)
    return steps + _evict_steps(cfg)


def make_plan(cfg: Config, catalog: Catalog, order: Order,
              meta: Optional[WorkshopMeta] = None, frontend_id: Optional[int] = None) -> Plan:
    """Validate the order against the catalog and plan it, or raise with the reason."""
    ws = catalog.get(order.folder)
    if meta is None:
        meta = catalog.meta(ws)
    hooks = {p: tuple(find_hooks(cfg, ws.folder, p)) for p in Phase}
    if len(order.students) > cfg.intake.max_range:
        raise BadOrder(f"range of {len(order.students)} students exceeds "
                       f"intake.max_range {cfg.intake.max_range}")
    for n in order.students:
        if not cfg.student_in_range(n):
            raise BadOrder(f"student {n} out of range {cfg.students.min}.."
                           f"{cfg.students.max}")
    if order.action is Action.RESET:
        if not meta.reset:
            raise BadOrder(f"RESET refused: workshop {ws.folder} is not flagged reset")
        if not hooks[Phase.RESET]:
            raise ConfigError(f"workshop {ws.folder} is flagged reset but has no reset "
                              f"hook (scripts/reset-{ws.folder}.sh or "
                              f"playbooks/{ws.folder}/reset.yml)")
    steps = available(cfg, student_steps(cfg, order, meta, hooks), order.customer)
    students = tuple(
        StudentPlan(n, user_name(n), cfg.students.home_root / user_name(n),
                    n + cfg.students.base_id, steps)
        for n in order.students)
    final: tuple[Step, ...] = ()
    if order.action is Action.RESET and order.is_range:
        final = available(cfg, [Step("report_capacity",
                                     f"PUT workshop capacity={len(order.students)}")])
    return Plan(order, ws, meta, students, final, hooks, frontend_id)
