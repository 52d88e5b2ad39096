"""RESET and PURGE run once the customer's CLEANUP is over (docs/protocol.md, "What each action does")."""

from __future__ import annotations

import time
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import SendError, TemporaryFailure
from wod_backend.order import Action, Order
from wod_backend.planning.meta import as_bool
from wod_backend.planning.plan import NO_CUSTOMER
from wod_backend.remote.clients import Clients
from wod_backend.state import journal as jr
from wod_backend.state.files import pid_alive
from wod_backend.state.outbox import Outbox


def cleanup_in_progress(journal: jr.Journal, order: Order) -> Optional[int]:
    """The journal id of a CLEANUP of this customer or these students still running."""
    for entry in journal.running(Action.CLEANUP.value):
        same_customer = order.customer != NO_CUSTOMER and entry.customer == order.customer
        if (same_customer or set(entry.students) & set(order.students)) \
                and pid_alive(entry.pid):
            return entry.id
    return None


def customer_cleaned(cfg: Config, journal: jr.Journal, order: Order,
                     clients: Clients) -> bool:
    """Whether the frontend says the customer is cleaned, or we have said so already."""
    if cfg.frontend is None or order.customer == NO_CUSTOMER:
        return True
    if Outbox(journal.conn, cfg.state_dir).has_body(f"customer:{order.customer}",
                                                    {"cleaned": True}):
        return True
    try:
        cleaned = clients.frontend.customer(order.customer).get("cleaned", False)
    except SendError as exc:
        raise TemporaryFailure(f"frontend unreachable to check customer "
                               f"{order.customer} is cleaned: {exc}")
    try:
        return as_bool(cleaned)
    except ValueError:
        return False


def wait_for_cleanup(cfg: Config, journal: jr.Journal, order: Order,
                     bound: float, clients: Clients) -> None:
    """RESET and PURGE run once the customer's CLEANUP is over: wait `bound` seconds at
    most, then exit 75 so that the MTA retries later (never block the mail system)."""
    if order.action not in (Action.RESET, Action.PURGE):
        return
    deadline = time.monotonic() + bound
    while True:
        running = cleanup_in_progress(journal, order)
        if running is None and customer_cleaned(cfg, journal, order, clients):
            return
        if time.monotonic() >= deadline:
            what = (f"CLEANUP order {running} still running" if running is not None
                    else f"customer {order.customer} not cleaned yet")
            raise TemporaryFailure(f"{order.action.value} deferred: {what}")
        time.sleep(0.5)
