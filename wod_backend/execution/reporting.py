"""Reports and hub calls of an order: through the outbox, sent at once when possible.

`Services` is what the executor sees: `student(...)`, `customer(...)`, `hub(...)`.
Each report writes an outbox item, then tries to send the items of that key. What
cannot be sent stays queued with its error; the order still succeeds for the MTA
("done, reports pending") and `wod-backend outbox flush` (cron) sends it later.

Hub calls are only written: no order waits for the hub to spawn or stop a server. The
executor hands their keys to a background confirmation (execution/confirm.py) when the
order ends, which sends them, waits for the spawn, and tries a failed one again.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

from wod_backend.config import Config
from wod_backend.errors import SendError
from wod_backend.remote.clients import Clients
from wod_backend.remote.frontend import clean_fields
from wod_backend.remote.hub import PENDING
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
            return send_hub(cfg, clients, item)
        raise ValueError(f"unknown service {item.service}")
    return send


def send_hub(cfg: Config, clients: Clients, item: Item) -> str:
    """A hub call, confirmed: a start is done when the server is ready, a stop when it
    is gone. A call that keeps failing goes dead after `spawn_attempts` tries (shown
    by `status` and `outbox list`), so that it stops hammering the hub."""
    if cfg.jupyterhub is None:
        raise SendError("no jupyterhub configured", temporary=True)
    hub, wait = clients.hub, cfg.jupyterhub.spawn_wait
    try:
        outcome = getattr(hub, item.method)(item.path)
        if item.method == "start":
            # Even a 201 is not "ready" (the hub answers it before a late spawn
            # failure): readiness is what the progress stream says.
            hub.wait_spawn(item.path, wait)
        elif item.method == "stop" and outcome == PENDING and \
                not hub.wait_stopped(item.path, wait):
            raise SendError(f"stop of {item.path} still pending after {wait:g}s")
        return outcome
    except SendError as exc:
        if exc.temporary and item.attempts + 1 >= cfg.jupyterhub.spawn_attempts:
            raise SendError(f"{exc} (gave up after {item.attempts + 1} attempts)",
                            exc.status, temporary=False)
        raise


# How long an order waits for a key another process is sending before leaving its item
# queued for that process or the next flush.
ORDER_KEY_WAIT = 2.0
# The hub calls where the latest one is what the server must end in.
HUB_INTENTS = ("start", "stop")


# A capacity report whose workshop id was unknown when it was queued (the frontend was
# down and nothing was cached): the id is looked up by notebook name when it is sent.
BY_NOTEBOOK = "workshop-by-notebook/"


def frontend_workshop_id(clients: Clients, notebook: str) -> int:
    for row in clients.frontend.workshops():
        if isinstance(row, dict) and row.get("notebook") == notebook \
                and isinstance(row.get("id"), int):
            return row["id"]
    raise SendError(f"workshop {notebook} is unknown to the frontend", temporary=False)


class _Sender:
    """An outbox and connections of one thread (SQLite connections and HTTP sessions
    are not shared between threads)."""

    def __init__(self, cfg: Config, outbox: Outbox, clients: Clients):
        self.outbox, self.clients = outbox, clients
        self.send = make_sender(cfg, clients)

    def flush_key(self, service: str, key: str, what: str) -> Optional[str]:
        """Send the pending items of `key`; why not, if they stay queued."""
        down = self.clients.down(service)
        if down:
            return f"queued {what}: {down}"
        # A key another process is sending (a flush) is left to it: no order waits.
        result = self.outbox.flush(self.send, {key}, wait=ORDER_KEY_WAIT)
        if result.busy:
            return f"queued {what}: being sent by another process"
        if result.failed or result.dead:
            return f"queued {what}: {self.outbox.items(None, {key})[-1].last_error}"
        return None


class Services:
    """The reports of one order. With `workers` (a batch), each report is sent by a
    pool of that many threads, per key in order (the key's lock and the outbox order),
    so that a 1,000-student batch does not wait on 2,000 calls one after the other."""

    def __init__(self, cfg: Config, journal: jr.Journal, entry: int,
                 clients: Optional[Clients] = None, workers: int = 0,
                 stop_now: Optional[Callable[[set[str]], None]] = None):
        """`stop_now`: hands a hub stop to the background confirmation at once."""
        self.cfg, self.journal, self.entry = cfg, journal, entry
        self.stop_now = stop_now
        self.clients = clients or Clients(cfg)
        self.outbox = Outbox(journal.conn, cfg.state_dir)
        self.inline = _Sender(cfg, self.outbox, self.clients)
        self.hub_keys: set[str] = set()  # for the background confirmation
        self._pool: Optional[ThreadPoolExecutor] = (
            ThreadPoolExecutor(workers, thread_name_prefix="report") if workers > 1
            else None)
        self._futures: list[Future] = []
        self._local = threading.local()

    def _report(self, service: str, key: str, method: str, path: str,
                body: Optional[dict] = None) -> None:
        self.outbox.enqueue(self.entry, service, key, method, path, body)
        what = f"{service} {method} {path}"
        if self._pool is not None:
            self._futures.append(self._pool.submit(self._in_thread, service, key, what))
            return
        why = self.inline.flush_key(service, key, what)
        if why:
            self.journal.log(self.entry, why)

    def _in_thread(self, service: str, key: str, what: str) -> Optional[str]:
        sender = getattr(self._local, "sender", None)
        if sender is None:
            outbox = Outbox(jr.Journal(self.cfg.state_dir).conn, self.cfg.state_dir)
            sender = self._local.sender = _Sender(self.cfg, outbox, Clients(self.cfg))
        return sender.flush_key(service, key, what)

    def drain(self) -> None:
        """Wait for the batch's reports in flight; their journal lines, in order."""
        if self._pool is None:
            return
        for future in self._futures:
            why = future.result()
            if why:
                self.journal.log(self.entry, why)
        self._futures = []
        self._pool.shutdown()

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
        key = f"hub:{user}"
        item = self.outbox.enqueue(self.entry, "hub", key, op, user)
        if op in HUB_INTENTS:
            self.outbox.supersede(key, HUB_INTENTS, item)
        if op == "stop" and key not in self.hub_keys and self.stop_now is not None:
            # A stop is handed to the background confirmation at once: the hub ends the
            # server while the order goes on (a CLEANUP measures, reports and wipes
            # meanwhile). Spawns wait for the order's end: everything is delivered.
            self.stop_now({key})
            return
        self.hub_keys.add(key)

    def pending(self) -> int:
        """Frontend reports still queued (hub calls are being confirmed meanwhile)."""
        return self.outbox.count_pending(self.entry, "frontend")
