"""The frontend's REST API (docs/protocol.md, "Calls to the frontend"), as its reference server really behaves.

- The token goes in `x-access-token` only and expires (180 s on the reference server):
  a 401 or 403 on a call logs in again once before giving up.
- The server hangs forever on some values (empty strings, null, fractions): every call
  has a client timeout, and values are cleaned before they leave (`clean_fields`).
- Connection errors, timeouts and 5xx are retried with backoff (PUT and GET are
  idempotent); what still fails is a temporary failure the outbox keeps.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

from wod_backend.config import Frontend as FrontendConfig
from wod_backend.config import read_secret
from wod_backend.remote.http import HttpError, Session

log = logging.getLogger(__name__)

BOOL_FIELDS = {"assigned", "active", "cleaned"}
INT_FIELDS = {"completionPercentage", "capacity"}
STR_FIELDS = {"password"}
RETRY_DELAYS = (0.2, 0.6, 1.5)


def clean_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Values in the forms the reference server accepts; anything else is a bug here."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in BOOL_FIELDS and isinstance(value, bool):
            out[key] = value
        elif key in INT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            out[key] = max(0, min(100, value)) if key == "completionPercentage" else value
        elif key in STR_FIELDS and isinstance(value, str) and value:
            out[key] = value
        else:
            raise ValueError(f"refusing to send {key}={value!r:.20}: the frontend hangs on it")
    return out


class Frontend:
    def __init__(self, cfg: FrontendConfig, retry_delays: tuple[float, ...] = RETRY_DELAYS,
                 give_up_when_down: bool = False):
        self.cfg = cfg
        # Set when a call got no HTTP answer at all; with give_up_when_down, later calls
        # fail at once instead of waiting for the same silence again.
        self.down: Optional[str] = None
        self.give_up_when_down = give_up_when_down
        self.http = Session(cfg.url, cfg.timeout, {"Content-Type": "application/json"})
        self.token: Optional[str] = None
        self.retry_delays = retry_delays
        self._workshops: Optional[list[dict]] = None

    def login(self) -> str:
        body = {"username": self.cfg.username, "password": read_secret(self.cfg.password_file)}
        resp = self.http.request("POST", "login", json=body)
        if resp.status_code != 200:
            # 401 wrong password, 404 unknown user: an operator must fix the config.
            raise HttpError(f"frontend login as {self.cfg.username}: HTTP {resp.status_code} "
                            f"{resp.text[:80]!r}",
                            resp.status_code, temporary=resp.status_code >= 500)
        try:
            self.token = resp.json()["accessToken"]
        except (ValueError, KeyError):
            raise HttpError("frontend login: no accessToken in the answer", 200)
        return self.token

    def call(self, method: str, path: str, body: Optional[dict] = None,
             auth: bool = True) -> Any:
        """One API call with re-login on 401/403 and retries on temporary failures."""
        if self.down and self.give_up_when_down:
            raise HttpError(f"frontend {method} {path}: not tried, {self.down}")
        last: Optional[HttpError] = None
        for delay in (0.0, *self.retry_delays):
            if delay:
                time.sleep(delay)
            try:
                return self._call_once(method, path, body, auth)
            except HttpError as exc:
                if exc.status is None:
                    self.down = f"no answer earlier ({exc})"
                if not exc.temporary:
                    raise
                last = exc
                log.info("frontend %s %s: %s", method, path, exc)
        assert last is not None
        raise last

    def _call_once(self, method: str, path: str, body: Optional[dict], auth: bool) -> Any:
        for attempt in (1, 2):
            headers = {}
            if auth:
                headers["x-access-token"] = self.token or self.login()
            resp = self.http.request(method, path, json=body, headers=headers)
            if auth and resp.status_code in (401, 403) and attempt == 1:
                self.token = None  # expired or revoked: log in again, once
                continue
            if resp.status_code == 200:
                try:
                    return resp.json()
                except ValueError:
                    return None
            temporary = resp.status_code >= 500 or resp.status_code in (408, 429)
            raise HttpError(f"frontend {method} {path}: HTTP {resp.status_code} "
                            f"{resp.text[:120]!r}", resp.status_code, temporary)
        raise AssertionError("unreachable")

    # -- the calls of docs/protocol.md ---------------------------------------
    def put(self, path: str, fields: dict[str, Any]) -> Any:
        return self.call("PUT", path, clean_fields(fields))

    def workshops(self) -> list[dict]:
        if self._workshops is None:
            data = self.call("GET", "workshops", auth=False)
            self._workshops = data if isinstance(data, list) else []
        return self._workshops

    def customer(self, customer_id: str) -> dict:
        data = self.call("GET", f"customers/{customer_id}")
        return data if isinstance(data, dict) else {}
