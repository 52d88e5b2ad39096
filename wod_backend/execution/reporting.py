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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from wod_backend.state import journal as jr
from wod_backend.planning.catalog import Catalog, Workshop, WorkshopMeta
from wod_backend.config import Config
from wod_backend.errors import BadOrder, TemporaryFailure
from wod_backend.remote.http import HttpError
from wod_backend.planning.meta import as_bool, as_scripts, as_whole
from wod_backend.order import Action, Order
from wod_backend.state.outbox import Item, Outbox
from wod_backend.planning.plan import NO_CUSTOMER

log = logging.getLogger(__name__)

class Clients:
    """The connections of one order (or one flush): one login, one workshop list.

    `patient` clients retry temporary failures with backoff (`outbox flush`, run by
    cron, has the time); an order's clients try once, and once the frontend has not
    answered they stop trying: the order queues its reports at once and exits, instead
    of holding procmail and a postfix delivery slot through seconds of retries."""

    def __init__(self, cfg: Config, patient: bool = False):
        self.cfg, self.patient = cfg, patient
        self._frontend: Any = None
        self._hub: Any = None

    @property
    def frontend(self) -> Any:
        if self._frontend is None:
            from wod_backend.remote.frontend import RETRY_DELAYS, Frontend

            assert self.cfg.frontend is not None
            self._frontend = Frontend(self.cfg.frontend,
                                      retry_delays=RETRY_DELAYS if self.patient else (),
                                      give_up_when_down=not self.patient)
        return self._frontend

    def down(self, service: str) -> Optional[str]:
        """Why sending to `service` now is pointless: it gave no answer to this order."""
        if service == "frontend" and self._frontend is not None:
            return self._frontend.down
        return None

    @property
    def hub(self) -> Any:
        if self._hub is None:
            from wod_backend.remote.hub import Hub

            assert self.cfg.jupyterhub is not None
            self._hub = Hub(self.cfg.jupyterhub)
        return self._hub


def make_sender(cfg: Config, clients: Optional[Clients] = None):  # type: ignore[no-untyped-def]
    clients = clients or Clients(cfg, patient=True)

    def send(item: Item) -> Any:
        if item.service == "frontend":
            if cfg.frontend is None:
                raise HttpError("no frontend configured", temporary=True)
            path = item.path
            if path.startswith(BY_NOTEBOOK):
                path = f"workshop/{frontend_workshop_id(clients, path[len(BY_NOTEBOOK):])}"
            return clients.frontend.call(item.method, path, item.body)
        if item.service == "hub":
            if cfg.jupyterhub is None:
                raise HttpError("no jupyterhub configured", temporary=True)
            hub = clients.hub
            outcome = getattr(hub, item.method)(item.path)
            if item.method == "start" and cfg.jupyterhub.start_wait > 0:
                hub.wait_ready(item.path, cfg.jupyterhub.start_wait)
            return outcome
        raise ValueError(f"unknown service {item.service}")
    return send


# A capacity report whose workshop id was unknown when it was queued (the frontend was
# down and nothing was cached): the id is looked up by notebook name when it is sent.
BY_NOTEBOOK = "workshop-by-notebook/"


def frontend_workshop_id(clients: Clients, notebook: str) -> int:
    for row in clients.frontend.workshops():
        if isinstance(row, dict) and row.get("notebook") == notebook \
                and isinstance(row.get("id"), int):
            return row["id"]
    raise HttpError(f"workshop {notebook} is unknown to the frontend", temporary=False)


def open_outbox(cfg: Config, journal: jr.Journal) -> Outbox:
    return Outbox(journal.conn, cfg.state_dir)


class Services:
    """The reports of one order."""

    def __init__(self, cfg: Config, journal: jr.Journal, entry: int,
                 clients: Optional[Clients] = None):
        self.cfg, self.journal, self.entry = cfg, journal, entry
        self.clients = clients or Clients(cfg)
        self.outbox = open_outbox(cfg, journal)
        self.send = make_sender(cfg, self.clients)

    def _report(self, service: str, key: str, method: str, path: str,
                body: Optional[dict] = None) -> None:
        self.outbox.enqueue(self.entry, service, key, method, path, body)
        down = self.clients.down(service)
        if down:
            self.journal.log(self.entry, f"queued {service} {method} {path}: {down}")
            return
        result = self.outbox.flush(self.send, {key})
        if result.failed or result.dead:
            failed = self.outbox.items(None, {key})[-1]
            self.journal.log(self.entry, f"queued {service} {method} {path}: "
                                         f"{failed.last_error}")

    def student(self, sp: Any, **fields: Any) -> None:
        from wod_backend.remote.frontend import clean_fields

        self._report("frontend", f"student:{sp.dbid}", "PUT", f"student/{sp.dbid}",
                     clean_fields(fields))

    def customer(self, customer: str, **fields: Any) -> None:
        from wod_backend.remote.frontend import clean_fields

        if customer == NO_CUSTOMER:
            return  # an admin's order: there is no frontend customer to report to
        self._report("frontend", f"customer:{customer}", "PUT", f"customer/{customer}",
                     clean_fields(fields))

    def workshop_capacity(self, folder: str, capacity: int,
                          frontend_id: Optional[int]) -> None:
        path = (f"workshop/{frontend_id}" if frontend_id is not None
                else f"{BY_NOTEBOOK}{folder}")
        self._report("frontend", f"workshop:{folder}", "PUT", path, {"capacity": capacity})

    def hub(self, user: str, op: str) -> None:
        self._report("hub", f"hub:{user}", op, user)

    def pending(self) -> int:
        return self.outbox.count_pending(self.entry)




# -- workshop flags -------------------------------------------------------------------

# What the frontend's row may change. wod.yml (root-owned content) stays the authority for
# what root acts on: range and appliances come from it alone, and the frontend's
# `compile` may only narrow its list.
FRONTEND_FLAGS = {"reset": as_bool, "ldap": as_bool, "varpass": as_bool,
                  "capacity": as_whole}


def _cache_path(cfg: Config) -> Path:
    return cfg.state_dir / "frontend-workshops.json"


def _cached_rows(cfg: Config) -> tuple[Optional[list], float]:
    """The cached workshop list (None if absent or unreadable) and its age."""
    cache = _cache_path(cfg)
    try:
        age = time.time() - cache.stat().st_mtime
        rows = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None, 0.0
    return (rows if isinstance(rows, list) else None), age


def workshop_rows(cfg: Config, clients: Clients) -> tuple[list[dict], str]:
    """The frontend's workshop list and where it came from (a brief on-disk cache)."""
    assert cfg.frontend is not None
    rows, age = _cached_rows(cfg)
    if rows is not None and age < cfg.frontend.flags_cache_seconds:
        return rows, f"frontend (cached {age:.0f}s ago)"
    try:
        rows = clients.frontend.workshops()
    except HttpError as exc:
        raise TemporaryFailure(f"frontend unreachable for the workshop flags: {exc}")
    cache = _cache_path(cfg)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(rows, fh)
        os.replace(tmp, cache)
        jr.adopt(cache)
    except OSError:
        log.warning("cannot cache the frontend's workshop list in %s", cache)
    return rows, "frontend"


def find_row(rows: list, order: Order) -> Optional[dict]:
    """The frontend's workshop row for an order (by notebook name), or None."""
    for name in (order.workshop, order.folder):
        for row in rows:
            if isinstance(row, dict) and row.get("notebook") == name:
                return row
    return None


def merge_row(meta: WorkshopMeta, row: dict, warn: Callable[[str], None]) -> WorkshopMeta:
    """wod.yml's metadata with what the frontend's row may change."""
    changes: dict[str, Any] = {}
    for key, convert in FRONTEND_FLAGS.items():
        if key in row and row[key] is not None:
            try:
                changes[key] = convert(row[key])
            except ValueError as exc:
                warn(f"frontend's {key}={row[key]!r:.30} ignored: expected {exc}")
    if "compile" in row:
        try:
            wanted = as_scripts(row["compile"] if row["compile"] != "" else None)
        except ValueError as exc:
            warn(f"frontend's compile={row['compile']!r:.40} ignored: expected {exc}")
        else:
            for name in wanted:
                if name not in meta.compile:
                    warn(f"frontend asks to compile {name}, which wod.yml does not list: "
                         f"ignored")
            changes["compile"] = tuple(n for n in meta.compile if n in wanted)
    return dataclasses.replace(meta, **changes)


@dataclass(frozen=True)
class Flags:
    meta: WorkshopMeta
    source: str  # where the flags came from, for the journal
    frontend_id: Optional[int]  # the workshop's id in the frontend, if known
    notes: tuple[str, ...] = ()


def workshop_flags(cfg: Config, catalog: Catalog, ws: Workshop, order: Order,
                   clients: Clients) -> Flags:
    """The order's workshop metadata: wod.yml, narrowed by the frontend's row.

    When the frontend cannot be reached and no cached list is fresh, the order is
    planned from wod.yml (its reports will wait in the outbox) instead of deferred."""
    meta = catalog.meta(ws)
    if cfg.frontend is None:
        return Flags(meta, "wod.yml", None)
    try:
        rows, source = workshop_rows(cfg, clients)
    except TemporaryFailure as exc:
        stale, _age = _cached_rows(cfg)
        row = find_row(stale or [], order)
        rid = row.get("id") if row else None
        return Flags(meta, f"wod.yml ({exc.reason})", rid if isinstance(rid, int) else None)
    row = find_row(rows, order)
    if row is None:
        raise BadOrder(f"workshop {order.workshop} is unknown to the frontend")
    notes: list[str] = []
    merged = merge_row(meta, row, notes.append)
    for note in notes:
        log.warning("workshop %s: %s", ws.folder, note)
    rid = row.get("id")
    return Flags(merged, source, rid if isinstance(rid, int) else None, tuple(notes))


# -- RESET and PURGE wait for the customer's CLEANUP ------------------------------------

def cleanup_in_progress(journal: jr.Journal, order: Order) -> Optional[int]:
    """The journal id of a CLEANUP of this customer or these students still running."""
    for entry in journal.running(Action.CLEANUP.value):
        same_customer = order.customer != NO_CUSTOMER and entry.customer == order.customer
        if (same_customer or set(entry.students) & set(order.students)) \
                and jr.pid_alive(entry.pid):
            return entry.id
    return None


def customer_cleaned(cfg: Config, journal: jr.Journal, order: Order,
                     clients: Clients) -> bool:
    """Whether the frontend says the customer is cleaned, or we have said so already."""
    if cfg.frontend is None or order.customer == NO_CUSTOMER:
        return True
    outbox = open_outbox(cfg, journal)
    if any(i.body == {"cleaned": True} for i in
           outbox.items(None, {f"customer:{order.customer}"})):
        return True
    try:
        cleaned = clients.frontend.customer(order.customer).get("cleaned", False)
    except HttpError as exc:
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
