"""Editing a test's configuration file as data: one deep merge, never text replacement
(a replacement that stops matching after a fixture changes applies nothing, silently)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def merge(base: dict, changes: dict) -> dict:
    """`changes` merged into `base`: mappings key by key, anything else replaced."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def edit_config(path: Path, changes: dict[str, Any], to: Path | None = None) -> Path:
    """The configuration at `path` with `changes` deep-merged in, written to `to` (by
    default over itself); every key of `changes` must end up in the file."""
    data = yaml.safe_load(path.read_text()) or {}
    merged = merge(data, changes)
    target = to or path
    target.write_text(yaml.safe_dump(merged, sort_keys=False, default_flow_style=False))
    return target
