"""JupyterHub REST API: users and their default server (docs/protocol.md, "Calls to JupyterHub").

Status codes are outcomes, not errors: 409 on user creation means the user exists, 400
on start means the server already runs, 400/404 on stop mean it does not run, 202 means
pending. Anything else raises HttpError (temporary for 5xx and connection failures).
"""

from __future__ import annotations

import time
from typing import Iterator, Optional
from urllib.parse import quote

from wod_backend.config import JupyterHub, read_secret
from wod_backend.remote.http import HttpError, Session

STARTED, PENDING, RUNNING, STOPPED, NOT_RUNNING, CREATED, EXISTS = (
    "started", "pending", "already running", "stopped", "not running", "created", "exists")


def api_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/hub/api") else url + "/hub/api"


def hub_api(cfg: JupyterHub) -> str:
    """Where the backend calls the hub: a managed hub's own API port on the loopback
    (never through the proxy, nor its TLS), else jupyterhub.url's /hub/api."""
    if cfg.manage:
        return f"http://127.0.0.1:{cfg.hub_port}/hub/api"
    return api_url(cfg.url)


class Hub:
    def __init__(self, cfg: JupyterHub):
        self.cfg = cfg
        self.http = Session(hub_api(cfg), cfg.timeout,
                            {"Authorization": f"token {read_secret(cfg.token_file)}"})

    def _call(self, method: str, path: str, ok: dict[int, str]) -> str:
        resp = self.http.request(method, path)
        if resp.status_code in ok:
            return ok[resp.status_code]
        temporary = resp.status_code >= 500 or resp.status_code in (408, 429)
        detail = resp.text[:160].replace("\n", " ")
        raise HttpError(f"hub {method} {path}: HTTP {resp.status_code} {detail}",
                        resp.status_code, temporary)

    def ensure_user(self, name: str) -> str:
        """The user exists afterwards. Looked up first: a token scoped to its students
        (a managed hub) may read them but not create users."""
        if self.http.request("GET", f"users/{quote(name)}").status_code == 200:
            return EXISTS
        return self._call("POST", f"users/{quote(name)}", {201: CREATED, 409: EXISTS})

    def start(self, name: str) -> str:
        return self._call("POST", f"users/{quote(name)}/server",
                          {201: STARTED, 202: PENDING, 400: RUNNING})

    def stop(self, name: str) -> str:
        return self._call("DELETE", f"users/{quote(name)}/server",
                          {204: STOPPED, 202: PENDING, 400: NOT_RUNNING, 404: NOT_RUNNING})

    def server_state(self, name: str) -> Optional[str]:
        """'ready', 'pending' or None (no server, or no such user)."""
        resp = self.http.request("GET", f"users/{quote(name)}")
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise HttpError(f"hub GET users/{name}: HTTP {resp.status_code}",
                            resp.status_code, resp.status_code >= 500)
        server = (resp.json().get("servers") or {}).get("")
        if not server:
            return None
        return "ready" if server.get("ready") else "pending"

    def token_scopes(self) -> list[str]:
        """The scopes the hub grants this token (`GET /user`: who the token is)."""
        resp = self.http.request("GET", "user")
        if resp.status_code != 200:
            raise HttpError(f"hub GET user: HTTP {resp.status_code}", resp.status_code,
                            resp.status_code >= 500)
        scopes = resp.json().get("scopes")
        return [str(s) for s in scopes] if isinstance(scopes, list) else []

    def users(self) -> list[dict]:
        """Every hub user with its servers (needs the list:users scope)."""
        resp = self.http.request("GET", "users")
        if resp.status_code != 200:
            raise HttpError(f"hub GET users: HTTP {resp.status_code}", resp.status_code,
                            resp.status_code >= 500)
        data = resp.json()
        return data if isinstance(data, list) else []

    def wait_spawn(self, name: str, bound: float) -> str:
        """Wait for a pending start through the hub's progress event stream (pushed as
        it happens: no polling load on a hub spawning fifty servers). Returns the
        ready event's message; a spawn that failed or is gone raises a temporary
        HttpError with the hub's reason, so that the start is tried again."""
        path = f"users/{quote(name)}/server/progress"
        try:
            for event in self.events(path, bound):
                if not isinstance(event, dict):
                    continue
                if event.get("ready"):
                    return str(event.get("message", "ready"))
                if event.get("failed"):
                    raise HttpError(f"spawn failed: {event.get('message', '')}"[:300],
                                    None, True)
        except HttpError as exc:
            if exc.status not in (400, 404):
                raise
        # The stream ended (or the hub says nothing is starting): ask the server itself.
        state = self.server_state(name)
        if state == "ready":
            return "ready"
        raise HttpError(f"spawn failed: the hub has {'a pending' if state else 'no'} "
                        f"server for {name}", None, True)

    def events(self, path: str, bound: float) -> "Iterator[object]":
        return self.http.events(path, bound)

    def wait_stopped(self, name: str, bound: float) -> bool:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if self.server_state(name) is None:
                return True
            time.sleep(0.1)
        return False
