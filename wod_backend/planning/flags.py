"""What the frontend's workshop row may change in wod.yml's metadata (pure)."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from wod_backend.planning.meta import WorkshopMeta, as_bool, as_scripts, as_whole

# What the frontend's row may change. wod.yml (root-owned content) stays the authority for
# what root acts on: range and appliances come from it alone, and the frontend's
# `compile` may only narrow its list.
FRONTEND_FLAGS = {"reset": as_bool, "ldap": as_bool, "varpass": as_bool,
                  "capacity": as_whole}


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
