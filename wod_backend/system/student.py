"""One student of one order, as a value; and what a student's system steps share.

`Student` holds the facts every step needs (number, user, ids, home, password,
workshop, mode, customer, appliance) and derives from them what templates, hook
scripts and playbooks receive: one place, so no step spells `student{n}` or takes
eight arguments. `Host` is what the steps of one order share on this machine: the
configuration, the workshop and its metadata, its template variables, a log.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from wod_backend.config import Config
from wod_backend.errors import StepFailed, WodError
from wod_backend.order import Order
from wod_backend.planning.appliances import target
from wod_backend.planning.catalog import Catalog, Workshop, WorkshopMeta, workshop_variables
from wod_backend.order import Seat
from wod_backend.system.accounts import account_ids
from wod_backend.system.templating import context_for


@dataclass(frozen=True)
class Student:
    number: int
    user: str
    home: Path
    dbid: int  # the frontend's id: number + students.base_id
    uid: Optional[int]  # configured ids; None without managed accounts
    gid: Optional[int]
    action: str
    workshop: str  # as ordered: WKSHP-X or CHLG-X
    folder: str  # the content folder: WKSHP-X
    mode: str  # WKSHP or CHLG
    customer: str
    appliance: Optional[str] = None
    password: Optional[str] = None
    # Per-student variables (system/student_vars.py): over the workshop's variables,
    # under the order's own (STDID, PASSSTU...).
    private: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: Config, order: Order, meta: WorkshopMeta, number: int) -> "Student":
        seat = Seat.of(cfg.students, number)
        managed = cfg.students.manage_accounts
        return cls(number=number, user=seat.user, home=seat.home, dbid=seat.dbid,
                   uid=seat.uid if managed else None, gid=seat.uid if managed else None,
                   action=order.action.value,
                   workshop=order.workshop, folder=order.folder, mode=order.mode.value,
                   customer=order.customer,
                   appliance=target(cfg, meta, order.folder, number))

    @classmethod
    def sample(cls, cfg: Config, folder: str, mode: str,
               appliance: Optional[str]) -> "Student":
        """A stand-in student for checking templates (`workshops check`)."""
        seat = Seat.of(cfg.students, cfg.students.min)
        return cls(number=seat.number, user=seat.user, home=seat.home, dbid=seat.dbid,
                   uid=None, gid=None, action="CREATE",
                   workshop=folder if mode == "WKSHP" else "CHLG-" + folder.split("-", 1)[1],
                   folder=folder, mode=mode, customer="0", appliance=appliance,
                   password="Sample-Passw0rd")

    def with_password(self, password: str) -> "Student":
        return dataclasses.replace(self, password=password)

    def with_private(self, values: Mapping[str, Any]) -> "Student":
        return dataclasses.replace(self, private=dict(values))

    def need_password(self) -> str:
        if self.password is None:
            raise StepFailed("internal: no new password generated before it is used")
        return self.password

    def template_vars(self) -> dict[str, Any]:
        """The per-order variables the reference offers to templates."""
        out: dict[str, Any] = {"STDID": self.number, "PASSSTU": self.password or "",
                               "STUDENT": self.user, "WORKSHOP": self.folder,
                               "MODEWS": self.mode, "CUSTOMER": self.customer}
        if self.appliance is not None:
            out["APPLIANCE"] = self.appliance
        return out

    def template_context(self, variables: Mapping[str, Any],
                         inventory_hostname: str) -> dict[str, Any]:
        """Everything this student's templates see: workshop and order variables,
        `inventory_hostname` and `hostvars`."""
        return context_for({**variables, **self.private, **self.template_vars()},
                           inventory_hostname)

    def hook_env(self, phase: str, state_dir: Path, content_dir: Path,
                 hooks_dir: Optional[Path]) -> dict[str, str]:
        """The WOD_* values of a hook (docs/content.md, "Hooks"), without the password."""
        return {
            "WOD_ACTION": self.action, "WOD_PHASE": phase, "WOD_STUDENT": str(self.number),
            "WOD_USER": self.user, "WOD_UID": "" if self.uid is None else str(self.uid),
            "WOD_GID": "" if self.gid is None else str(self.gid), "WOD_HOME": str(self.home),
            "WOD_WORKSHOP": self.workshop, "WOD_FOLDER": self.folder, "WOD_MODE": self.mode,
            "WOD_CUSTOMER": self.customer, "WOD_TARGET": self.appliance or "",
            "WOD_STATE_DIR": str(state_dir), "WOD_CONTENT_DIR": str(content_dir),
            "WOD_HOOKS_DIR": "" if hooks_dir is None else str(hooks_dir),
            # where a create hook writes variables_<WKSHP>_<N>.yml (student_vars.py)
            "WOD_PASS_DIR": str(state_dir / "pass"),
        }

    def playbook_vars(self, hook_env: Mapping[str, str], variables: Mapping[str, Any],
                      python: str) -> dict[str, Any]:
        """A playbook's extra variables: the hook values in lower case, the template
        variables, and the interpreter (pyenv shims confuse Ansible's discovery)."""
        values: dict[str, Any] = {k.lower(): v for k, v in hook_env.items()}
        values.update(variables)
        values.update(self.private)
        values.update(self.template_vars())
        if self.password is None:
            values.pop("PASSSTU")
        values["ansible_python_interpreter"] = python or sys.executable
        return values


@dataclass
class Host:
    """What the system steps of one order share on this machine."""

    cfg: Config
    workshop: Workshop
    meta: WorkshopMeta
    log: Callable[[str], None]
    # by student and per-student variables
    rendered: dict[tuple[int, str], dict[str, bytes]] = field(default_factory=dict)
    _variables: Optional[dict[str, Any]] = None
    _checked: dict[int, tuple[Optional[int], Optional[int]]] = field(default_factory=dict)
    # A batch's one pass over /proc (uid -> pids) for the step it is running: set, a
    # student absent from it has no process (system/root_steps.py's run_batch).
    processes: Optional[dict[int, list[int]]] = None

    def variables(self) -> dict[str, Any]:
        if self._variables is None:
            self._variables = workshop_variables(self.cfg, Catalog(self.cfg),
                                                 self.workshop.folder)
        return self._variables

    def ids(self, student: Student) -> tuple[Optional[int], Optional[int]]:
        """(uid, gid) the student's files belong to, once the account is checked to be
        ours; (None, None) without managed accounts."""
        if student.uid is None:
            return None, None
        if student.number not in self._checked:
            self._checked[student.number] = account_ids(self.cfg, student.number)
        return self._checked[student.number]

    def ids_or_none(self, student: Student) -> Optional[int]:
        """The student's uid, or None (no managed accounts, or not ours)."""
        try:
            return self.ids(student)[0]
        except WodError:
            return None

    def context(self, student: Student) -> dict[str, Any]:
        return student.template_context(self.variables(), self.cfg.inventory_hostname)
