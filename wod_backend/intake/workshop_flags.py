"""The workshop flags of an order: wod.yml, narrowed by the frontend's row.

The frontend's workshop list is fetched once and cached briefly in state_dir, so that
a burst of orders fetches it once and a short outage does not stop them; what may be
taken from a row is planning/flags.py's business.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import BadOrder, SendError, TemporaryFailure
from wod_backend.order import Order
from wod_backend.planning.catalog import Catalog, Workshop, WorkshopMeta
from wod_backend.planning.flags import merge_row
from wod_backend.remote.clients import Clients
from wod_backend.state.files import adopt

log = logging.getLogger(__name__)


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
    except SendError as exc:
        raise TemporaryFailure(f"frontend unreachable for the workshop flags: {exc}")
    cache = _cache_path(cfg)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(rows, fh)
        os.replace(tmp, cache)
        adopt(cache)
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


