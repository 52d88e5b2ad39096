"""Frozen dataclasses from YAML: the generic half of the configuration's loading.

`build(cls, data)` walks a mapping against the dataclass fields: an unknown key, a
wrong type or a missing required value is refused with one line naming the key.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from wod_backend.errors import ConfigError


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            Path: "a path", dict: "a mapping", list: "a list of strings"}.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(key: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _convert(key, inner, value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}: expected a mapping")
        return build(tp, value, key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, str) and value:
            return Path(value)
    elif tp is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif tp is list:
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            return list(value)
    raise ConfigError(f"config key {key}: expected {_type_name(tp)}, got {value!r:.60}")


def build(cls: Any, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - {"path"}
    for key in data:
        if key not in names:
            raise ConfigError(f"config key {prefix}{key}: unknown key")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.metadata.get("required"):
                raise ConfigError(f"config key {prefix}{f.name}: missing required value")
            continue
        kwargs[f.name] = _convert(prefix + f.name, hints[f.name], data[f.name])
    return cls(**kwargs)
