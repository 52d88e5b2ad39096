"""One HTTP session per service: base URL, default headers, a timeout on every call.

`requests` is imported here only, and only when a service is actually called: the
start-up path of commands that talk to no service stays free of it.
"""

from __future__ import annotations

from typing import Any, Optional

from wod_backend.errors import TemporaryFailure


class HttpError(Exception):
    """A response we did not want; `temporary` says whether trying later may help."""

    def __init__(self, message: str, status: Optional[int] = None, temporary: bool = True):
        super().__init__(message)
        self.status = status
        self.temporary = temporary


class Session:
    def __init__(self, base_url: str, timeout: float, headers: Optional[dict] = None):
        import requests

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        # Proxies from the environment must not see tokens meant for loopback services.
        self.session.trust_env = False

    def request(self, method: str, path: str, *, json: Any = None,
                headers: Optional[dict] = None):  # type: ignore[no-untyped-def]
        import requests

        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            return self.session.request(method, url, json=json, headers=headers,
                                        timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise HttpError(f"{method} {path}: no answer within {self.timeout:g}s")
        except requests.ConnectionError as exc:
            reason = str(exc.args[0] if exc.args else exc)
            reason = reason.split("Caused by ")[-1][:120]
            raise HttpError(f"{method} {path}: cannot connect to {self.base_url} ({reason})")
        except requests.RequestException as exc:
            raise HttpError(f"{method} {path}: {type(exc).__name__}")


def as_temporary(exc: HttpError, what: str) -> TemporaryFailure:
    return TemporaryFailure(f"{what}: {exc}")
