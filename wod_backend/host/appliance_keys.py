"""The appliances' host keys (docs/appliances.md): recorded by `setup` on first contact
into root's known_hosts file, never replaced by it; `appliances forget` (root) is how an
operator accepts a rebuilt appliance's new key. And what `appliances` and `doctor` show
for each appliance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from wod_backend.config import Appliance, Config
from wod_backend.errors import WodError
from wod_backend.order import user_name
from wod_backend.host.hostconf import Change, ensure_file
from wod_backend.planning.appliances import addresses, managed
from wod_backend.planning.catalog import Catalog
from wod_backend.system import appliance_link as link


@dataclass(frozen=True)
class Host:
    """One appliance address of one workshop, and the students who use it."""

    folder: str
    address: str
    app: Appliance
    students: tuple[int, ...]

    @property
    def pattern(self) -> str:
        return link.pattern(self.address, self.app.port)


def hosts(cfg: Config) -> list[Host]:
    """Every appliance address the backend sets up students on, by workshop."""
    from wod_backend.planning.appliances import target

    catalog = Catalog(cfg)
    out = []
    for ws in catalog.all():
        try:
            meta = catalog.meta(ws)
            app = managed(cfg, meta, ws.folder)
            if app is None:
                continue
            low, high = meta.range or (cfg.students.min, cfg.students.max)
            numbers = [n for n in range(max(low, cfg.students.min),
                                        min(high, cfg.students.max) + 1)]
            by_address: dict[str, list[int]] = {a: [] for a in addresses(cfg, meta, ws.folder)}
            for n in numbers:
                t = target(cfg, meta, ws.folder, n)
                if t is not None:
                    by_address.setdefault(t, []).append(n)
        except WodError:
            continue  # workshops check names it
        out += [Host(ws.folder, a, app, tuple(ns)) for a, ns in by_address.items()]
    return out


def _text(lines: dict[str, list[str]]) -> bytes:
    return "".join(line + "\n" for key in sorted(lines) for line in lines[key]).encode()


def ensure_keys(cfg: Config, apply: bool) -> list[Change]:
    """Record the host keys of the appliances not recorded yet (first contact); a
    recorded one is kept as it is, whatever the appliance offers now."""
    known = link.recorded(cfg)
    changes, unreachable = [], []
    for h in hosts(cfg):
        if h.pattern in known:
            continue
        keys = link.scan(h.address, h.app.port, min(h.app.timeout, 10))
        if not keys:
            unreachable.append(f"{h.address}:{h.app.port} ({h.folder})")
            continue
        known[h.pattern] = keys
        changes.append(Change("appliance host key", f"recorded for {h.address}:"
                              f"{h.app.port} ({h.folder}): {keys[0].split()[1]}"))
    if changes:
        ensure_file(cfg.known_hosts, _text(known), 0o644, None, "appliance host keys", apply)
    if unreachable:
        changes.append(Change("appliance host key", f"not recorded: {', '.join(unreachable)} "
                              f"did not answer (run setup again once it is up)"))
    return changes


def forget(cfg: Config, address: str) -> int:
    """Drop an appliance's recorded keys (any port); how many patterns went."""
    known = link.recorded(cfg)
    gone = [p for p in known if p == address or p.startswith(f"[{address}]:")]
    for p in gone:
        del known[p]
    if gone:
        ensure_file(cfg.known_hosts, _text(known), 0o644, None, "appliance host keys", True)
    return len(gone)


@dataclass(frozen=True)
class Probe:
    host: Host
    problem: Optional[str]  # None: reachable, key accepted, sudo, the accounts there


def probe(cfg: Config, h: Host, user: Optional[tuple[int, int]] = None) -> Probe:
    """Reach it as an order does (recorded host key, the key, sudo) and look for the
    accounts of its students; `user`: as the backend user (when root asks)."""
    users = [user_name(n) for n in h.students]
    conn = link.Link(cfg, link.target(cfg, h.app, h.address, h.folder), user=user)
    try:
        missing = conn.missing(users) if users else []
    except WodError as exc:
        return Probe(h, exc.reason)
    finally:
        conn.close()
    if missing:
        return Probe(h, f"{link.Target(h.address, h.app, h.folder, '').name}: "
                        f"{len(missing)} of {len(users)} student accounts missing "
                        f"({', '.join(missing[:3])}...)")
    return Probe(h, None)
