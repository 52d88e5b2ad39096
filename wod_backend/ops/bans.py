"""The managed hub's login bans (host/hubconfig.py's authenticator writes them): the
addresses refused after repeated failed logins, for status, doctor and metrics."""

from __future__ import annotations

import json

from wod_backend.config import Config


def current(cfg: Config, now: float) -> dict[str, float]:
    """Banned address -> seconds left; {} without a managed hub or a ban."""
    hub = cfg.jupyterhub
    if hub is None or not hub.manage:
        return {}
    try:
        data = json.loads(hub.bans_file.read_text())
    except (OSError, ValueError):
        return {}
    bans = data.get("bans") if isinstance(data, dict) else None
    if not isinstance(bans, dict):
        return {}
    return {str(ip): float(until) - now for ip, until in bans.items()
            if isinstance(until, (int, float)) and until > now}
