"""Read-only views for operators: the order history, the workshop list."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError
from wod_backend.planning.catalog import Catalog
from wod_backend.state.journal import Entry, Journal


def history(cfg: Config, limit: int) -> list[Entry]:
    return Journal(cfg.state_dir).latest(limit)


@dataclass(frozen=True)
class WorkshopRow:
    """One workshop of the catalog as `workshops list` shows it; `error` when its
    wod.yml cannot be read (the other fields are then unknown)."""

    folder: str
    origin: str
    shadowed_private: bool
    path: str
    name: Optional[str] = None
    reset: Optional[bool] = None
    ldap: Optional[bool] = None
    capacity: Optional[int] = None
    duration: Optional[float] = None
    error: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.error is None:
            del out["error"]
        else:
            for key in ("name", "reset", "ldap", "capacity", "duration"):
                del out[key]
        return out


def workshop_rows(cfg: Config) -> list[WorkshopRow]:
    catalog = Catalog(cfg)
    rows = []
    for ws in catalog.all():
        row = WorkshopRow(ws.folder, ws.origin, ws.shadowed, str(ws.path))
        try:
            meta = catalog.meta(ws)
            row = replace(row, name=meta.name, reset=meta.reset, ldap=meta.ldap,
                          capacity=meta.capacity, duration=meta.duration)
        except ConfigError as exc:
            row = replace(row, error=exc.reason)
        rows.append(row)
    return rows
