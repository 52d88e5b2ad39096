"""Workshop metadata in the forms real data takes, read into one typed value.

Two sources describe a workshop: its `wod.yml` (root-owned content, written for the
frontend's seeder as much as for us) and the frontend's workshop row. Neither is tidy:

- `compile`: `false` in every published wod.yml; in the frontend's rows a string
  column (`null`, `""` or `"a.sh,b.sh"`); a YAML list is fine too.
- `range`: `[1, 6]`, `['1981-1985']` (YAML reads `[546-565]` so as well),
  `"1981-1985"`, `["1981", "1985"]`.
- flags: booleans, or the strings "true"/"false" (the frontend's rows);
  numbers may come as strings.
- the seeder's display keys (`active priority replayId workshopImg ...`) are known and
  ignored without a word.

Each normaliser returns the value in one form or raises ValueError with what was
expected; `parse_meta` turns a mapping into a `WorkshopMeta` or the list of defects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

# Keys of the frontend's seeder (and of its rows) that the backend has no use for.
SEEDER_KEYS = frozenset({
    "active", "priority", "replayId", "replayLink", "workshopImg", "badgeImg", "beta",
    "category", "presenter", "role", "avatar", "location", "alternateLocation",
    "alternatLocation", "videoLink", "notebook", "sessionType", "id", "createdAt",
    "updatedAt", "workshopIds", "ldapUser", "ldapPassword", "students"})

_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")
_SCRIPT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}", re.ASCII)
_INT = re.compile(r"\s*(0|[1-9][0-9]{0,8})\s*", re.ASCII)
_RANGE_TEXT = re.compile(r"\s*(0|[1-9][0-9]{0,8})\s*-\s*(0|[1-9][0-9]{0,8})\s*", re.ASCII)


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("true or false")


def as_whole(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _INT.fullmatch(value):
        return int(value)
    raise ValueError("a whole number")


def as_hours(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        try:
            hours = float(value)
        except ValueError:
            pass
        else:
            if hours >= 0:
                return hours
    raise ValueError("a number of hours")


def as_range(value: Any) -> tuple[int, int]:
    """`[1, 6]`, `["1", "6"]`, `["1-6"]` or `"1-6"` -> (1, 6); min must not exceed max."""
    low: Optional[int] = None
    high: Optional[int] = None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        m = _RANGE_TEXT.fullmatch(value)
        if m:
            low, high = int(m.group(1)), int(m.group(2))
    elif isinstance(value, list) and len(value) == 2:
        try:
            low, high = as_whole(value[0]), as_whole(value[1])
        except ValueError:
            pass
    if low is None or high is None:
        raise ValueError("a range [min, max] or \"min-max\"")
    if low > high:
        raise ValueError(f"a range with min <= max (min {low} > max {high})")
    return low, high


def as_scripts(value: Any) -> tuple[str, ...]:
    """false, null, "" or [] -> (); "a.sh,b.sh" or ["a.sh", "b.sh"] -> the names."""
    if value is None or value is False:
        return ()
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = tuple(v.strip() for v in value)
        if all(_SCRIPT.fullmatch(n) for n in names):
            return names
    raise ValueError("false or script names (a list, or \"a.sh,b.sh\")")


def as_text(value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if value is None:
        return ""
    raise ValueError("a string")


NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "name": as_text, "description": as_text, "capacity": as_whole, "range": as_range,
    "reset": as_bool, "ldap": as_bool, "varpass": as_bool, "compile": as_scripts,
    "duration": as_hours, "monoappliance": as_bool, "multiappliance": as_bool,
}


@dataclass(frozen=True)
class WorkshopMeta:
    name: str
    description: str = ""
    capacity: int = 0
    range: Optional[tuple[int, int]] = None
    reset: bool = False
    ldap: bool = False
    varpass: bool = False
    compile: tuple[str, ...] = ()
    duration: float = 4
    monoappliance: bool = False
    multiappliance: bool = False
    unknown_keys: tuple[str, ...] = field(default=())


def normalise(data: Any) -> tuple[dict[str, Any], list[str]]:
    """(the known keys in one form each, every defect as `key must be ..., got ...`)."""
    if not isinstance(data, dict):
        return {}, ["expected a mapping"]
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in data.items():
        convert = NORMALISERS.get(key)
        if convert is None:
            continue
        try:
            values[key] = convert(value)
        except ValueError as exc:
            problems.append(f"{key} must be {exc}, got {value!r:.40}")
    return values, problems


def unknown_keys(data: dict) -> tuple[str, ...]:
    return tuple(sorted(str(k) for k in data if k not in NORMALISERS and k not in SEEDER_KEYS))


def parse_meta(folder: str, data: Any) -> tuple[Optional[WorkshopMeta], list[str]]:
    """A wod.yml mapping -> (metadata, []) or (None, its defects)."""
    values, problems = normalise(data if data is not None else {})
    if problems:
        return None, problems
    values.setdefault("name", folder)
    return WorkshopMeta(unknown_keys=unknown_keys(data or {}), **values), []
