"""Reports and hub calls of an order: through the outbox, sent at once when possible.

`Services` is what the executor sees: `student(...)`, `customer(...)`, `hub(...)`.
Each call writes an outbox item, then tries to send the items of that key. What cannot
be sent stays queued with its error; the order still succeeds for the MTA ("done,
reports pending") and `wod-backend outbox flush` (cron) sends it later.
Also here: the workshop flags (frontend first, wod.yml otherwise) and the wait for a
customer's CLEANUP before a RESET or PURGE.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Optional

from wod_backend import journal as jr
from wod_backend.catalog import Catalog, Workshop, WorkshopMeta
from wod_backend.config import Config
from wod_backend.errors import BadOrder, TemporaryFailure
from wod_backend.http import HttpError
from wod_backend.order import Action, Order
from wod_backend.outbox import Item, Outbox

log = logging.getLogger(__name__)

_CLIENTS: dict[tuple[int, str], Any] = {}


def _client(cfg: Config, kind: str) -> Any:
    """One client per process and service: one login, one cached workshop list."""
    key = (id(cfg), kind)
    if key not in _CLIENTS:
        if kind == "frontend":
            from wod_backend.frontend import Frontend

            assert cfg.frontend is not None
            _CLIENTS[key] = Frontend(cfg.frontend)
        else:
            from wod_backend.hub import Hub

            assert cfg.jupyterhub is not None
            _CLIENTS[key] = Hub(cfg.jupyterhub)
    return _CLIENTS[key]


def frontend_client(cfg: Config):  # type: ignore[no-untyped-def]
    return _client(cfg, "frontend")


def hub_client(cfg: Config):  # type: ignore[no-untyped-def]
    return _client(cfg, "hub")


def make_sender(cfg: Config):  # type: ignore[no-untyped-def]
    def send(item: Item) -> Any:
        if item.service == "frontend":
            if cfg.frontend is None:
                raise HttpError("no frontend configured", temporary=True)
            return frontend_client(cfg).call(item.method, item.path, item.body)
        if item.service == "hub":
            if cfg.jupyterhub is None:
                raise HttpError("no jupyterhub configured", temporary=True)
            hub = hub_client(cfg)
            outcome = getattr(hub, item.method)(item.path)
            if item.method == "start" and cfg.jupyterhub.start_wait > 0:
                hub.wait_ready(item.path, cfg.jupyterhub.start_wait)
            return outcome
        raise ValueError(f"unknown service {item.service}")
    return send


def open_outbox(cfg: Config, journal: jr.Journal) -> Outbox:
    return Outbox(journal.conn, cfg.state_dir)


class Services:
    """The reports of one order."""

    def __init__(self, cfg: Config, journal: jr.Journal, entry: int):
        self.cfg, self.journal, self.entry = cfg, journal, entry
        self.outbox = open_outbox(cfg, journal)
        self.send = make_sender(cfg)

    def _report(self, service: str, key: str, method: str, path: str,
                body: Optional[dict] = None) -> None:
        self.outbox.enqueue(self.entry, service, key, method, path, body)
        result = self.outbox.flush(self.send, {key})
        if result.failed or result.dead:
            failed = self.outbox.items(None, {key})[-1]
            self.journal.log(self.entry, f"queued {service} {method} {path}: "
                                         f"{failed.last_error}")

    def student(self, sp: Any, **fields: Any) -> None:
        from wod_backend.frontend import clean_fields

        self._report("frontend", f"student:{sp.dbid}", "PUT", f"student/{sp.dbid}",
                     clean_fields(fields))

    def customer(self, customer: str, **fields: Any) -> None:
        from wod_backend.frontend import clean_fields

        self._report("frontend", f"customer:{customer}", "PUT", f"customer/{customer}",
                     clean_fields(fields))

    def workshop_capacity(self, folder: str, capacity: int, frontend_id: int) -> None:
        self._report("frontend", f"workshop:{frontend_id}", "PUT",
                     f"workshop/{frontend_id}", {"capacity": capacity})

    def hub(self, user: str, op: str) -> None:
        self._report("hub", f"hub:{user}", op, user)

    def pending(self) -> int:
        return self.outbox.count_pending(self.entry)


# -- workshop flags -------------------------------------------------------------------

FLAG_KEYS = ("reset", "ldap", "varpass", "monoappliance", "multiappliance")


def workshop_rows(cfg: Config) -> tuple[list[dict], str]:
    """The frontend's workshop list and where it came from (a brief on-disk cache)."""
    assert cfg.frontend is not None
    cache = cfg.state_dir / "frontend-workshops.json"
    try:
        age = time.time() - cache.stat().st_mtime
        if age < cfg.frontend.flags_cache_seconds:
            return json.loads(cache.read_text()), f"frontend (cached {age:.0f}s ago)"
    except (OSError, ValueError):
        pass
    try:
        rows = frontend_client(cfg).workshops()
    except HttpError as exc:
        raise TemporaryFailure(f"frontend unreachable for the workshop flags: {exc}")
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(rows, fh)
        os.replace(tmp, cache)
        jr.adopt(cache)
    except OSError:
        log.warning("cannot cache the frontend's workshop list in %s", cache)
    return rows, "frontend"


def frontend_row(cfg: Config, order: Order) -> tuple[Optional[dict], str]:
    """The frontend's workshop row for an order (by notebook name), or None."""
    rows, source = workshop_rows(cfg)
    for name in (order.workshop, order.folder):
        for row in rows:
            if isinstance(row, dict) and row.get("notebook") == name:
                return row, source
    return None, source


def workshop_flags(cfg: Config, catalog: Catalog, ws: Workshop,
                   order: Order) -> tuple[WorkshopMeta, str, Optional[dict]]:
    """(metadata, which source gave the flags, the frontend's row if any)."""
    meta = catalog.meta(ws)
    if cfg.frontend is None:
        return meta, "wod.yml", None
    row, source = frontend_row(cfg, order)
    if row is None:
        raise BadOrder(f"workshop {order.workshop} is unknown to the frontend")
    changes: dict[str, Any] = {k: bool(row[k]) for k in FLAG_KEYS if k in row
                               and isinstance(row[k], (bool, int))}
    rng = row.get("range")
    if isinstance(rng, list) and len(rng) == 2 and all(type(v) is int for v in rng):
        changes["range"] = (rng[0], rng[1])
    if isinstance(row.get("capacity"), int):
        changes["capacity"] = row["capacity"]
    if "compile" in row and not row["compile"]:
        changes["compile"] = ()
    return dataclasses.replace(meta, **changes), source, row


# -- RESET and PURGE wait for the customer's CLEANUP ------------------------------------

def cleanup_in_progress(journal: jr.Journal, order: Order) -> Optional[int]:
    """The journal id of a CLEANUP of this customer or these students still running."""
    for entry in journal.running(Action.CLEANUP.value):
        same_customer = order.customer != "0" and entry.customer == order.customer
        if (same_customer or set(entry.students) & set(order.students)) \
                and jr.pid_alive(entry.pid):
            return entry.id
    return None


def customer_cleaned(cfg: Config, journal: jr.Journal, order: Order) -> bool:
    """Whether the frontend says the customer is cleaned, or we have said so already."""
    if cfg.frontend is None or order.customer == "0":
        return True
    outbox = open_outbox(cfg, journal)
    if any(i.body == {"cleaned": True} for i in
           outbox.items(None, {f"customer:{order.customer}"})):
        return True
    try:
        return bool(frontend_client(cfg).customer(order.customer).get("cleaned"))
    except HttpError as exc:
        raise TemporaryFailure(f"frontend unreachable to check customer "
                               f"{order.customer} is cleaned: {exc}")


def wait_for_cleanup(cfg: Config, journal: jr.Journal, order: Order,
                     bound: float) -> None:
    """RESET and PURGE run once the customer's CLEANUP is over: wait `bound` seconds at
    most, then exit 75 so that the MTA retries later (never block the mail system)."""
    if order.action not in (Action.RESET, Action.PURGE):
        return
    deadline = time.monotonic() + bound
    while True:
        running = cleanup_in_progress(journal, order)
        if running is None and customer_cleaned(cfg, journal, order):
            return
        if time.monotonic() >= deadline:
            what = (f"CLEANUP order {running} still running" if running is not None
                    else f"customer {order.customer} not cleaned yet")
            raise TemporaryFailure(f"{order.action.value} deferred: {what}")
        time.sleep(0.5)
