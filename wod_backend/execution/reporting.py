"""Reports and hub calls of an order: through the outbox, sent at once when possible.

`Services` is what the executor sees: `student(...)`, `customer(...)`, `hub(...)`.
Each call writes an outbox item, then tries to send the items of that key. What cannot
be sent stays queued with its error; the order still succeeds for the MTA ("done,
reports pending") and `wod-backend outbox flush` (cron) sends it later.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from wod_backend.config import Config
from wod_backend.errors import SendError
from wod_backend.remote.clients import Clients
from wod_backend.remote.frontend import clean_fields
from wod_backend.state import journal as jr
from wod_backend.state.outbox import Item, Outbox


def make_sender(cfg: Config, clients: Optional[Clients] = None) -> Callable[[Item], Any]:
    clients = clients or Clients(cfg, patient=True)

    def send(item: Item) -> Any:
        if item.service == "frontend":
            if cfg.frontend is None:
                raise SendError("no frontend configured", temporary=True)
            path = item.path
            if path.startswith(BY_NOTEBOOK):
                path = f"workshop/{frontend_workshop_id(clients, path[len(BY_NOTEBOOK):])}"
            return clients.frontend.call(item.method, path, item.body)
        if item.service == "hub":
            if cfg.jupyterhub is None:
                raise SendError("no jupyterhub configured", temporary=True)
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
    raise SendError(f"workshop {notebook} is unknown to the frontend", temporary=False)


class Services:
    """The reports of one order."""

    def __init__(self, cfg: Config, journal: jr.Journal, entry: int,
                 clients: Optional[Clients] = None):
        self.cfg, self.journal, self.entry = cfg, journal, entry
        self.clients = clients or Clients(cfg)
        self.outbox = Outbox(journal.conn, cfg.state_dir)
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

    def student(self, dbid: int, **fields: Any) -> None:
        self._report("frontend", f"student:{dbid}", "PUT", f"student/{dbid}",
                     clean_fields(fields))

    def customer(self, customer: str, **fields: Any) -> None:
        # No step reports about customer 0 (admin orders): planning.plan.available.
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
