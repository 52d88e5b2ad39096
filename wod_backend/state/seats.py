"""Who holds a seat: the rule status, reconcile, expire and metrics share.

A student's seat is taken by their last order that ran: a CREATE, an EVICT (until its
CLEANUP), the CLEANUP of a `reset` workshop (until its RESET); anything else done frees
it. Whether a workshop resets is the catalog's to say (planning), passed in.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from wod_backend.errors import WodError
from wod_backend.order import folder_of
from wod_backend.state.journal import DONE, DONE_PENDING, RUNNING, Entry

FINISHED = (DONE, DONE_PENDING)


class Catalog(Protocol):
    """What the rule needs of planning's Catalog."""

    def get(self, folder: str) -> Any: ...

    def meta(self, workshop: Any) -> Any: ...


def resets(catalog: Catalog, workshop: Optional[str]) -> bool:
    try:
        return bool(catalog.meta(catalog.get(folder_of(workshop or ""))).reset)
    except (IndexError, WodError):
        return False


def holds_seat(catalog: Catalog, e: Optional[Entry],
               outcomes: tuple[str, ...] = (*FINISHED, RUNNING)) -> bool:
    """Whether the student's last order leaves the seat taken."""
    if e is None or e.outcome not in outcomes:
        return False
    return e.action in ("CREATE", "EVICT") or (e.action == "CLEANUP"
                                               and resets(catalog, e.workshop))
