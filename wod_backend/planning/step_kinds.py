"""The steps an order is made of: one enum, one table of what each needs.

Adding a step is one entry here, one handler (execution/executor.py's HANDLERS for the
steps of the backend user, system/root_steps.py's for root's), and its place in
planning/plan.py; a test
checks that every kind has a handler and that the sudo helper accepts exactly the root
kinds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from wod_backend.planning.hooks import Hook


class StepKind(str, enum.Enum):
    ENSURE_ACCOUNT = "ensure_account"
    NEW_PASSWORD = "new_password"
    RENDER_NOTEBOOKS = "render_notebooks"
    SET_LINUX_PASSWORD = "set_linux_password"
    SET_LDAP_PASSWORD = "set_ldap_password"
    KILL_PROCESSES = "kill_processes"
    WIPE_HOME = "wipe_home"
    RESTORE_SKELETON = "restore_skeleton"
    SSH_KEY = "ssh_key"
    COMPILE = "compile"
    DELIVER_NOTEBOOKS = "deliver_notebooks"
    VERIFY_HOME = "verify_home"
    MEASURE_COMPLETION = "measure_completion"
    HOOK_CREATE = "hook_create"
    HOOK_POST_COPY = "hook_post_copy"
    HOOK_CLEANUP = "hook_cleanup"
    HOOK_RESET = "hook_reset"
    REPORT_PASSWORD = "report_password"
    REPORT_STUDENT_FREE = "report_student_free"
    REPORT_STUDENT_ASSIGNED = "report_student_assigned"
    REPORT_CUSTOMER_ACTIVE = "report_customer_active"
    REPORT_CUSTOMER_INACTIVE = "report_customer_inactive"
    REPORT_CUSTOMER_CLEANED = "report_customer_cleaned"
    REPORT_COMPLETION = "report_completion"
    REPORT_CAPACITY = "report_capacity"
    APPLIANCE_ACCOUNT = "appliance_account"
    APPLIANCE_PASSWORD = "appliance_password"
    APPLIANCE_HOME = "appliance_home"
    APPLIANCE_KEY = "appliance_key"
    APPLIANCE_REVOKE = "appliance_revoke"
    APPLIANCE_HOST_KEY = "appliance_host_key"
    HUB_ENSURE_USER = "hub_ensure_user_server"
    HUB_START = "hub_start_server"
    HUB_STOP = "hub_stop_server"


@dataclass(frozen=True)
class StepSpec:
    root: bool  # runs as root (in-process when root, else through the sudo helper)
    service: Optional[str]  # the outside service it talks to: frontend, hub, ldap, appliance
    customer: bool  # a report about the order's customer (none for customer 0)


def _spec(root: bool = False, service: Optional[str] = None,
          customer: bool = False) -> StepSpec:
    return StepSpec(root, service, customer)


# Every step is idempotent: running it again converges (a retry ends as a clean run).
SPECS: dict[StepKind, StepSpec] = {
    StepKind.ENSURE_ACCOUNT: _spec(root=True),
    StepKind.NEW_PASSWORD: _spec(),
    StepKind.RENDER_NOTEBOOKS: _spec(),
    StepKind.SET_LINUX_PASSWORD: _spec(root=True),
    StepKind.SET_LDAP_PASSWORD: _spec(service="ldap"),
    StepKind.KILL_PROCESSES: _spec(root=True),
    StepKind.WIPE_HOME: _spec(root=True),
    StepKind.RESTORE_SKELETON: _spec(root=True),
    StepKind.SSH_KEY: _spec(root=True),
    StepKind.COMPILE: _spec(root=True),
    StepKind.DELIVER_NOTEBOOKS: _spec(root=True),
    StepKind.VERIFY_HOME: _spec(root=True),
    StepKind.MEASURE_COMPLETION: _spec(root=True),
    StepKind.HOOK_CREATE: _spec(),
    StepKind.HOOK_POST_COPY: _spec(),
    StepKind.HOOK_CLEANUP: _spec(),
    StepKind.HOOK_RESET: _spec(),
    StepKind.REPORT_PASSWORD: _spec(service="frontend"),
    StepKind.REPORT_STUDENT_FREE: _spec(service="frontend"),
    StepKind.REPORT_STUDENT_ASSIGNED: _spec(service="frontend"),
    StepKind.REPORT_CUSTOMER_ACTIVE: _spec(service="frontend", customer=True),
    StepKind.REPORT_CUSTOMER_INACTIVE: _spec(service="frontend", customer=True),
    StepKind.REPORT_CUSTOMER_CLEANED: _spec(service="frontend", customer=True),
    StepKind.REPORT_COMPLETION: _spec(service="frontend", customer=True),
    StepKind.REPORT_CAPACITY: _spec(service="frontend"),
    # The appliance side, as the backend user over SSH (system/appliance_link.py); the
    # student's known_hosts on this host is root's.
    StepKind.APPLIANCE_ACCOUNT: _spec(service="appliance"),
    StepKind.APPLIANCE_PASSWORD: _spec(service="appliance"),
    StepKind.APPLIANCE_HOME: _spec(service="appliance"),
    StepKind.APPLIANCE_KEY: _spec(service="appliance"),
    StepKind.APPLIANCE_REVOKE: _spec(service="appliance"),
    StepKind.APPLIANCE_HOST_KEY: _spec(root=True),
    StepKind.HUB_ENSURE_USER: _spec(service="hub"),
    StepKind.HUB_START: _spec(service="hub"),
    StepKind.HUB_STOP: _spec(service="hub"),
}

ROOT_KINDS = frozenset(k for k, s in SPECS.items() if s.root)


@dataclass(frozen=True)
class Step:
    kind: StepKind
    detail: str = ""
    hook: Optional[Hook] = None

    @property
    def name(self) -> str:
        return self.kind.value

    @property
    def spec(self) -> StepSpec:
        return SPECS[self.kind]

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "detail": self.detail}
