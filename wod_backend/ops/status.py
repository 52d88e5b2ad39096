"""`status`: per student, what the backend knows: from the journal, the outbox, the hub.

Assigned or free is derived from the last order that ran for the student (CREATE:
assigned; CLEANUP of a `reset` workshop: still assigned until its RESET; anything else
done: free). Hub state comes from one `GET /users` when a hub is configured.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from wod_backend.state import journal as jr
from wod_backend.planning.catalog import Catalog
from wod_backend.config import Config
from wod_backend.errors import WodError
from wod_backend.remote.http import HttpError

SCAN_LIMIT = 20000


def last_orders(journal: jr.Journal, students: set[int]) -> dict[int, jr.Entry]:
    found: dict[int, jr.Entry] = {}
    for entry in journal.latest(SCAN_LIMIT, detail=False):
        if entry.outcome in (jr.REFUSED, jr.DUPLICATE) or not entry.action:
            continue
        for n in entry.students:
            if n in students and n not in found:
                found[n] = entry
        if len(found) == len(students):
            break
    return found


def hub_servers(cfg: Config) -> Optional[dict[str, str]]:
    if cfg.jupyterhub is None:
        return None
    from wod_backend.execution.reporting import Clients

    hub = Clients(cfg).hub
    try:
        users = hub.users()
    except (HttpError, ValueError):
        return {}
    out = {}
    for user in users:
        server = (user.get("servers") or {}).get("")
        out[user.get("name")] = ("running" if server and server.get("ready")
                                 else "pending" if server else "stopped")
    return out


def _resets(catalog: Catalog, workshop: Optional[str]) -> bool:
    try:
        folder = "WKSHP-" + (workshop or "").split("-", 1)[1]
        return catalog.meta(catalog.get(folder)).reset
    except (IndexError, WodError):
        return False


def rows(cfg: Config, students: Iterable[int]) -> list[dict[str, Any]]:
    wanted = list(students)
    journal = jr.Journal(cfg.state_dir)
    last = last_orders(journal, set(wanted))
    pending: dict[int, int] = {}
    for (order_id, count) in journal.conn.execute(
            "SELECT order_id, COUNT(*) FROM outbox WHERE status='pending' GROUP BY order_id"):
        pending[order_id] = count
    hub = hub_servers(cfg)
    catalog = Catalog(cfg)
    out = []
    for n in wanted:
        e = last.get(n)
        assigned = False
        if e is not None and e.outcome in (jr.DONE, jr.DONE_PENDING, jr.RUNNING):
            # After the CLEANUP of a `reset` workshop the seat stays taken until RESET.
            assigned = e.action == "CREATE" or (e.action == "CLEANUP"
                                                and _resets(catalog, e.workshop))
        row = {"student": n, "user": f"student{n}",
               "state": "assigned" if assigned else "free",
               "workshop": e.workshop if e and assigned else None,
               "customer": e.customer if e and assigned else None,
               "last_order": e.id if e else None,
               "last_action": e.action if e else None,
               "last_outcome": e.shown_outcome if e else None,
               "reports_pending": pending.get(e.id, 0) if e else 0,
               "hub": None if hub is None else hub.get(f"student{n}", "no user")}
        out.append(row)
    return out


def table(data: list[dict[str, Any]]) -> str:
    lasts = [(f"#{r['last_order']} {r['last_action']} {r['last_outcome']}"
              if r["last_order"] else "-") for r in data]
    width = max([len("LAST ORDER"), *map(len, lasts)])
    lines = [f"{'STUDENT':12}  {'STATE':8}  {'WORKSHOP':20}  {'CUST':6}  "
             f"{'LAST ORDER':{width}}  {'PENDING':7}  HUB"]
    for r, last in zip(data, lasts):
        lines.append(f"{r['user']:12}  {r['state']:8}  {r['workshop'] or '-':20}  "
                     f"{r['customer'] or '-':6}  {last:{width}}  {r['reports_pending']:7}  "
                     f"{r['hub'] or '-'}")
    return "\n".join(lines)
