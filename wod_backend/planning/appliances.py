"""Appliances: the host a student's workshop runs against (docs/appliances.md).

mono: one shared host, the workshop's base address. multi: one host per student, the
base address's last number plus N minus the workshop's range min. Pure arithmetic, so
mistakes are found when planning, not half-way through an order. wod.yml (root's
content tree) says mono or multi; the configuration gives the address, port, account
and key.
"""

from __future__ import annotations

import ipaddress
from typing import Optional

from wod_backend.planning.catalog import WorkshopMeta
from wod_backend.config import Appliance, Config
from wod_backend.errors import ConfigError


def needs_appliance(meta: WorkshopMeta) -> bool:
    return meta.monoappliance or meta.multiappliance


def appliance(cfg: Config, folder: str) -> Appliance:
    app = cfg.appliances.get(folder)
    if app is None:
        raise ConfigError(f"workshop {folder} needs an appliance: set appliances.{folder} "
                          f"to its base IPv4 address")
    return app


def managed(cfg: Config, meta: WorkshopMeta, folder: str) -> Optional[Appliance]:
    """The appliance whose student side the backend sets up itself (CREATE: account,
    password, clean home, key), or None: no appliance, or its hooks do it."""
    if not needs_appliance(meta):
        return None
    app = appliance(cfg, folder)
    return app if app.manage else None


def addresses(cfg: Config, meta: WorkshopMeta, folder: str) -> list[str]:
    """Every address the workshop's students reach (setup records their host keys)."""
    if not needs_appliance(meta):
        return []
    if meta.multiappliance and meta.range is not None:
        low, high = meta.range
        numbers = [n for n in range(low, high + 1) if cfg.student_in_range(n)]
        return sorted({t for n in numbers if (t := target(cfg, meta, folder, n))},
                      key=lambda a: ipaddress.IPv4Address(a))
    return [str(base_address(cfg, folder))]


def base_address(cfg: Config, folder: str) -> ipaddress.IPv4Address:
    raw = appliance(cfg, folder).host
    try:
        addr = ipaddress.IPv4Address(str(raw).strip())
    except ValueError:
        raise ConfigError(f"config key appliances.{folder}: {raw!r:.40} is not an "
                          f"IPv4 address")
    if addr.is_unspecified or addr.is_multicast or addr.is_reserved or \
            str(addr).endswith((".0", ".255")):
        raise ConfigError(f"config key appliances.{folder}: {addr} is a placeholder or "
                          f"not a host address")
    return addr


def target(cfg: Config, meta: WorkshopMeta, folder: str, student: int) -> Optional[str]:
    """The appliance address for a student, or None for a workshop without one."""
    if not needs_appliance(meta):
        return None
    base = base_address(cfg, folder)
    if meta.monoappliance and not meta.multiappliance:
        return str(base)
    if meta.range is None:
        raise ConfigError(f"workshop {folder} is multiappliance but its wod.yml has no "
                          f"range [min, max]")
    low, high = meta.range
    if not low <= student <= high:
        raise ConfigError(f"student {student} is outside workshop {folder}'s range "
                          f"{low}..{high}")
    last = int(str(base).rsplit(".", 1)[1]) + student - low
    if not 1 <= last <= 254:
        raise ConfigError(f"appliance for student {student} of {folder} would be "
                          f"{str(base).rsplit('.', 1)[0]}.{last}: outside the address range")
    return str(base.__class__(int(base) - int(str(base).rsplit(".", 1)[1]) + last))
