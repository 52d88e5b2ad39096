"""Planning: an order and the catalog in, the steps each student gets out.

Pure: no root, no network, no writes. `--dry-run` prints exactly this plan, and the
executor (`execution/executor.py`) runs exactly these steps, so what an operator previews is what
happens. The step lists follow docs/protocol.md, "What each action does".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import BadOrder, ConfigError
from wod_backend.order import Action, Order, Seat
from wod_backend.planning.appliances import managed
from wod_backend.planning.catalog import Catalog, Workshop, WorkshopMeta
from wod_backend.planning.hooks import Hook, Phase, find_hooks
from wod_backend.planning.step_kinds import Step, StepKind as K


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
    # Its students' new passwords are set in chunks, one chpasswd for many (a RESET
    # of a range); the order's other steps run student by student.
    batch_passwords: bool = False

    def as_dict(self) -> dict:
        out = self.order.summary()
        out["folder"] = self.workshop.folder
        out["origin"] = self.workshop.origin
        out["steps"] = [{"student": s.student, "user": s.user, "home": str(s.home),
                         "steps": [st.as_dict() for st in s.steps]} for s in self.students]
        out["final_steps"] = [st.as_dict() for st in self.final_steps]
        return out


_HOOK_KIND = {Phase.CREATE: K.HOOK_CREATE, Phase.POST_COPY: K.HOOK_POST_COPY,
              Phase.CLEANUP: K.HOOK_CLEANUP, Phase.RESET: K.HOOK_RESET}


def _hook_steps(hooks: tuple[Hook, ...]) -> list[Step]:
    return [Step(_HOOK_KIND[h.phase], f"{h.origin} {h.kind} {h.path}", h) for h in hooks]


def _password_steps(cfg: Config, meta: WorkshopMeta) -> list[Step]:
    steps = [Step(K.NEW_PASSWORD)]
    if cfg.students.manage_accounts:
        steps.append(Step(K.SET_LINUX_PASSWORD))
    if meta.ldap:
        steps.append(Step(K.SET_LDAP_PASSWORD))
    steps.append(Step(K.REPORT_PASSWORD, "PUT student password"))
    return steps


def _kill(cfg: Config) -> list[Step]:
    return [Step(K.KILL_PROCESSES)] if cfg.students.manage_accounts else []


def _evict_steps(cfg: Config) -> list[Step]:
    # Processes end first: one left running would write into the home after its wipe.
    return [Step(K.REPORT_STUDENT_FREE, "PUT student assigned=false"), *_kill(cfg),
            Step(K.WIPE_HOME), Step(K.VERIFY_HOME, "empty, no process")]


# Customer 0 is how admin tools order: there is no such customer in the frontend (it
# answers 400), so nothing is reported about it.
NO_CUSTOMER = "0"


def available(cfg: Config, steps: list[Step], customer: str = NO_CUSTOMER) -> tuple[Step, ...]:
    """Drop the reports and hub calls of services this backend does not have, and the
    customer reports of an order without a frontend customer."""
    return tuple(st for st in steps
                 if not (st.spec.service == "frontend" and cfg.frontend is None)
                 and not (st.spec.customer and customer == NO_CUSTOMER)
                 and not (st.spec.service == "hub" and cfg.jupyterhub is None))


def _appliance(cfg: Config, order: Order, meta: WorkshopMeta) -> dict[str, list[Step]]:
    """The appliance side (docs/appliances.md) by part of the order: `check` (reach it,
    sudo, the student's account: before anything changes), `create` (after the key is
    made: its known host here, password, clean home, key there), `leave` (after a
    CLEANUP, RESET, EVICT or PURGE: home or ~/.ssh gone, a password nobody knows)."""
    app = managed(cfg, meta, order.folder)
    if app is None:
        return {"check": [], "create": [], "leave": []}
    where = f"{app.host}:{app.port}" + (" and the range's next addresses"
                                        if meta.multiappliance else "")
    password = [] if meta.ldap else [Step(K.APPLIANCE_PASSWORD, "the student's")]
    create = [Step(K.APPLIANCE_HOST_KEY, "~/.ssh/known_hosts: the recorded host key"),
              *password, Step(K.APPLIANCE_HOME, "ended, emptied, /etc/skel"),
              Step(K.APPLIANCE_KEY, "~/.ssh/authorized_keys: the student's key")]
    if order.action in (Action.CLEANUP, Action.PURGE):
        gone = Step(K.APPLIANCE_HOME, "ended, emptied (not archived), /etc/skel")
    else:
        gone = Step(K.APPLIANCE_REVOKE, "~/.ssh removed, processes ended")
    leave = [gone] + ([] if meta.ldap else [Step(K.APPLIANCE_PASSWORD, "unknown")])
    return {"check": [Step(K.APPLIANCE_ACCOUNT, where)], "create": create, "leave": leave}


def _create_steps(cfg: Config, order: Order, meta: WorkshopMeta,
                  hooks: dict[Phase, tuple[Hook, ...]],
                  appliance: dict[str, list[Step]]) -> list[Step]:
    steps = [Step(K.ENSURE_ACCOUNT)] if cfg.students.manage_accounts else []
    # Rendered in memory before anything changes: a content defect changes nothing.
    # The appliance is reached before anything changes too: down, the order fails
    # temporarily with nothing done.
    steps += [Step(K.NEW_PASSWORD), Step(K.RENDER_NOTEBOOKS), *appliance["check"]]
    steps += _password_steps(cfg, meta)[1:]
    steps += [*_kill(cfg), Step(K.WIPE_HOME), Step(K.RESTORE_SKELETON), Step(K.SSH_KEY)]
    # The appliance takes the new key before anything is delivered: a retry after
    # a failure there starts again from a clean home.
    steps += appliance["create"]
    if meta.compile:
        steps.append(Step(K.COMPILE, " ".join(meta.compile)))
    steps += _hook_steps(hooks[Phase.CREATE])
    steps.append(Step(K.DELIVER_NOTEBOOKS, f"{order.folder} mode {order.mode.value}"))
    steps += _hook_steps(hooks[Phase.POST_COPY])
    steps.append(Step(K.VERIFY_HOME, "only what was delivered, no process"))
    steps.append(Step(K.REPORT_CUSTOMER_ACTIVE, "PUT customer active=true"))
    return steps + [Step(K.HUB_ENSURE_USER), Step(K.HUB_START)]


def student_steps(cfg: Config, order: Order, meta: WorkshopMeta,
                  hooks: dict[Phase, tuple[Hook, ...]]) -> list[Step]:
    a = order.action
    appliance = _appliance(cfg, order, meta)
    if a is not Action.CREATE:
        appliance["leave"] = appliance["check"] + appliance["leave"]
    if a is Action.CREATE:
        return _create_steps(cfg, order, meta, hooks, appliance)
    if a is Action.CLEANUP:
        # The server stops first (the hub ends it while the rest goes on): nothing of
        # the student's writes into the home while it is measured and archived.
        steps = [Step(K.HUB_STOP), *_hook_steps(hooks[Phase.CLEANUP])]
        steps += [Step(K.MEASURE_COMPLETION),
                  Step(K.REPORT_COMPLETION, "PUT customer completionPercentage")]
        steps += _password_steps(cfg, meta) + appliance["leave"]
        if meta.reset:
            # The seat stays taken until the RESET; said outright, as the reference
            # backend did, so the frontend agrees whichever way it got here.
            steps += [Step(K.REPORT_STUDENT_ASSIGNED, "PUT student assigned=true"),
                      Step(K.REPORT_CUSTOMER_INACTIVE, "PUT customer active=false")]
        else:
            steps += _evict_steps(cfg)
        steps.append(Step(K.REPORT_CUSTOMER_CLEANED, "PUT customer cleaned=true"))
        return steps
    if a is Action.RESET:
        steps = _password_steps(cfg, meta) + appliance["leave"]
        steps += _hook_steps(hooks[Phase.RESET])
        return steps + _evict_steps(cfg)
    if a is Action.EVICT:
        # Abuse ends now, without the frontend's CLEANUP: the home stays for inspection
        # (the CLEANUP wipes it), the processes end last so that none outlives it.
        return [Step(K.HUB_STOP), *_password_steps(cfg, meta), *appliance["leave"],
                *_kill(cfg)]
    # PURGE
    steps = [Step(K.HUB_STOP), *_password_steps(cfg, meta), *appliance["leave"]]
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
    seats = [Seat.of(cfg.students, n) for n in order.students]
    students = tuple(StudentPlan(s.number, s.user, s.home, s.dbid, steps) for s in seats)
    final: tuple[Step, ...] = ()
    if order.action is Action.RESET and order.is_range:
        final = available(cfg, [Step(K.REPORT_CAPACITY,
                                     f"PUT workshop capacity={len(order.students)}")])
    # A range whose students start with new Linux passwords (a RESET) sets them in
    # chunks, one chpasswd for many students (execution/order_run.py).
    batch = len(students) > 1 and [st.kind for st in steps[:2]] == [
        K.NEW_PASSWORD, K.SET_LINUX_PASSWORD]
    return Plan(order, ws, meta, students, final, hooks, frontend_id, batch)
