"""Read-only views for operators: the order history, the workshop list."""

from __future__ import annotations

from typing import Any

from wod_backend.config import Config
from wod_backend.errors import ConfigError
from wod_backend.planning.catalog import Catalog
from wod_backend.state.journal import Entry, Journal


def history(cfg: Config, limit: int) -> list[Entry]:
    return Journal(cfg.state_dir).latest(limit)


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
