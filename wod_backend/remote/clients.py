"""The connections of one order (or of one `outbox flush`) to the outside services."""

from __future__ import annotations

from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import SendError
from wod_backend.remote.frontend import RETRY_DELAYS, Frontend
from wod_backend.remote.hub import Hub


class Clients:
    """The connections of one order (or one flush): one login, one workshop list.

    `patient` clients retry temporary failures with backoff (`outbox flush`, run by
    cron, has the time); an order's clients try once, and once the frontend has not
    answered they stop trying: the order queues its reports at once and exits, instead
    of holding procmail and a postfix delivery slot through seconds of retries."""

    def __init__(self, cfg: Config, patient: bool = False):
        self.cfg, self.patient = cfg, patient
        self._frontend: Optional[Frontend] = None
        self._hub: Optional[Hub] = None

    @property
    def frontend(self) -> Frontend:
        if self._frontend is None:
            assert self.cfg.frontend is not None
            self._frontend = Frontend(self.cfg.frontend,
                                      retry_delays=RETRY_DELAYS if self.patient else (),
                                      give_up_when_down=not self.patient)
        return self._frontend

    def down(self, service: str) -> Optional[str]:
        """Why sending to `service` now is pointless: it gave no answer to this order."""
        if service == "frontend" and self._frontend is not None:
            return self._frontend.down
        return None

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            assert self.cfg.jupyterhub is not None
            self._hub = Hub(self.cfg.jupyterhub)
        return self._hub


def hub_servers(cfg: Config) -> Optional[dict[str, str]]:
    """user -> running, pending or stopped, from one GET /users (None: no hub
    configured; empty: the hub did not answer)."""
    if cfg.jupyterhub is None:
        return None
    try:
        users = Clients(cfg).hub.users()
    except (SendError, ValueError):
        return {}
    out: dict[str, str] = {}
    for user in users:
        server = (user.get("servers") or {}).get("")
        out[str(user.get("name"))] = ("running" if server and server.get("ready")
                                 else "pending" if server else "stopped")
    return out
