"""Read-only views for operators: order history, the workshop list."""

from __future__ import annotations

import time
from typing import Any

from wod_backend.planning.catalog import Catalog
from wod_backend.config import Config
from wod_backend.errors import ConfigError
from wod_backend.state.journal import Entry, Journal


def history(cfg: Config, limit: int) -> list[Entry]:
    return Journal(cfg.state_dir).latest(limit)


def _students(nums: list[int]) -> str:
    if not nums:
        return "-"
    return str(nums[0]) if len(nums) == 1 else f"{nums[0]}-{nums[-1]}"


def history_text(entries: list[Entry]) -> str:
    if not entries:
        return "no orders yet"
    lines = [f"{'ID':>5}  {'RECEIVED':19}  {'SRC':4}  {'ACTION':7}  {'STUDENTS':9}  "
             f"{'CUST':6}  {'WORKSHOP':22}  {'OUTCOME':16}  REASON"]
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.received))
        lines.append(f"{e.id:>5}  {when}  {e.source:4}  {e.action or '-':7}  "
                     f"{_students(e.students):9}  {e.customer or '-':6}  "
                     f"{e.workshop or '-':22}  {e.shown_outcome:16}  {e.reason or ''}")
    return "\n".join(lines)


def workshop_rows(cfg: Config) -> list[dict[str, Any]]:
    catalog = Catalog(cfg)
    rows = []
    for ws in catalog.all():
        row: dict[str, Any] = {"folder": ws.folder, "origin": ws.origin,
                               "shadowed_private": ws.shadowed, "path": str(ws.path)}
        try:
            meta = catalog.meta(ws)
            row.update(name=meta.name, reset=meta.reset, ldap=meta.ldap,
                       capacity=meta.capacity, duration=meta.duration)
        except ConfigError as exc:
            row["error"] = exc.reason
        rows.append(row)
    return rows


def workshop_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no workshops"
    lines = [f"{'FOLDER':28}  {'FROM':8}  {'RESET':5}  {'LDAP':5}  {'SEATS':5}  NAME"]
    for r in rows:
        origin = r["origin"] + ("*" if r["shadowed_private"] else "")
        if "error" in r:
            lines.append(f"{r['folder']:28}  {origin:8}  {r['error']}")
            continue
        lines.append(f"{r['folder']:28}  {origin:8}  {str(r['reset']).lower():5}  "
                     f"{str(r['ldap']).lower():5}  {r['capacity']:5}  {r['name']}")
    if any(r["shadowed_private"] for r in rows):
        lines.append("* a private copy exists too; the public one wins")
    return "\n".join(lines)


def _outbox(cfg: Config):  # type: ignore[no-untyped-def]
    from wod_backend.execution.reporting import open_outbox

    return open_outbox(cfg, Journal(cfg.state_dir))


def outbox_items(cfg: Config, show_all: bool, limit: int) -> list[dict[str, Any]]:
    return [i.shown() for i in _outbox(cfg).items(None if show_all else "pending",
                                                    limit=limit)]


def outbox_table(items: list[dict[str, Any]]) -> str:
    if not items:
        return "outbox empty"
    lines = [f"{'ID':>6}  {'ORDER':>5}  {'STATUS':7}  {'TRIES':>5}  {'CALL':34}  BODY / ERROR"]
    for i in items:
        lines.append(f"{i['id']:>6}  {i['order'] or '-':>5}  {i['status']:7}  "
                     f"{i['attempts']:>5}  {i['call'][:34]:34}  {i['body'] or ''} "
                     f"{i['last_error'] or ''}")
    return "\n".join(lines)


def flush_outbox(cfg: Config, retry_dead: bool):  # type: ignore[no-untyped-def]
    from wod_backend.execution.reporting import make_sender

    outbox = _outbox(cfg)
    if retry_dead:
        outbox.requeue_dead()
    return outbox.flush(make_sender(cfg))
