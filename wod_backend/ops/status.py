"""`status`: per student, what the backend knows: from the journal, the outbox, the hub.

Assigned or free is derived from the last order that ran for the student (CREATE:
assigned; EVICT: evicted, the seat taken until its CLEANUP; CLEANUP of a `reset`
workshop: still assigned until its RESET; anything else done: free). Hub state comes
from one `GET /users` when a hub is configured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional

from wod_backend.config import Config
from wod_backend.planning.catalog import Catalog
from wod_backend.order import user_name
from wod_backend.remote.clients import hub_servers
from wod_backend.state import journal as jr
from wod_backend.state.outbox import DEAD, Item, Outbox
from wod_backend.state.seats import holds_seat

def _trouble(item: Optional[Item]) -> Optional[str]:
    """A hub call that did not go through: a failed spawn retried, or given up."""
    if item is None:
        return None
    state = "given up" if item.status == DEAD else "retrying"
    return (f"{item.method} {state} after {item.attempts} attempt(s): "
            f"{item.last_error}")[:200]


def _idle(state: str, assigned: bool) -> str:
    """An assigned student's stopped server is idle, not a fault: the culler or their
    logout stopped it, and their next login starts it."""
    return "idle (stopped)" if assigned and state == "stopped" else state


@dataclass(frozen=True)
class StatusRow:
    """One student as `status` shows it."""

    student: int
    user: str
    state: str  # free | assigned | evicted
    workshop: Optional[str]
    customer: Optional[str]
    last_order: Optional[int]
    last_action: Optional[str]
    last_outcome: Optional[str]
    reports_pending: int
    hub: Optional[str]  # None: no hub configured
    hub_call: Optional[str]  # a hub call retried or given up

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rows(cfg: Config, students: Iterable[int]) -> list[StatusRow]:
    wanted = list(students)
    journal = jr.Journal(cfg.state_dir)
    last = journal.last_orders(wanted)
    outbox = Outbox(journal.conn, cfg.state_dir)
    pending = outbox.pending_by_order()
    troubles = outbox.hub_troubles()
    hub = hub_servers(cfg)
    catalog = Catalog(cfg)
    out = []
    for n in wanted:
        e = last.get(n)
        assigned = holds_seat(catalog, e)
        state = "free" if not assigned else "evicted" if e and e.action == "EVICT" \
            else "assigned"
        out.append(StatusRow(
            student=n, user=user_name(n), state=state,
            workshop=e.workshop if e and assigned else None,
            customer=e.customer if e and assigned else None,
            last_order=e.id if e else None, last_action=e.action if e else None,
            last_outcome=e.shown_outcome if e else None,
            reports_pending=pending.get(e.id, 0) if e else 0,
            hub=None if hub is None else _idle(hub.get(user_name(n), "no user"), assigned),
            hub_call=_trouble(troubles.get(user_name(n)))))
    return out
