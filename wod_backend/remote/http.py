"""One HTTP session per service: base URL, default headers, a timeout on every call.

Built on the standard library's http.client with one kept-alive connection per
service: `requests` costs 125 ms of import per process, more than a whole order's
work, and procmail starts one process per mail. A request whose kept-alive connection
was closed by the server meanwhile is sent again once on a fresh connection.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import socket
import time
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

from wod_backend.errors import SendError


class HttpError(SendError):
    """A response we did not want (or none); `temporary`: whether later may help."""


class Response:
    def __init__(self, status: int, body: bytes):
        self.status_code = status
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class Session:
    def __init__(self, base_url: str, timeout: float, headers: Optional[dict] = None):
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        self.base_url = base_url.rstrip("/")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._conn: Optional[http.client.HTTPConnection] = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = (http.client.HTTPSConnection if self.scheme == "https"
                   else http.client.HTTPConnection)
            self._conn = cls(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, *, json: Any = None,
                headers: Optional[dict] = None) -> Response:
        url = f"{self.prefix}/{path.lstrip('/')}"
        body = None if json is None else jsonlib.dumps(json).encode()
        hdrs = {**self.headers, **(headers or {})}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        for attempt in (1, 2):
            fresh = self._conn is None
            conn = self._connection()
            try:
                # One send for headers and body: no Nagle / delayed-ACK stall.
                conn.request(method, url, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return Response(resp.status, data)
            except socket.timeout:
                self.close()
                raise HttpError(f"{method} {path}: no answer within {self.timeout:g}s")
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as exc:
                self.close()
                if attempt == 1 and not fresh:
                    continue  # the server closed an idle kept-alive connection
                raise HttpError(f"{method} {path}: cannot connect to {self.base_url} "
                                f"({type(exc).__name__})")
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise HttpError(f"{method} {path}: cannot connect to {self.base_url} "
                                f"({reason})")
        raise AssertionError("unreachable")

    def events(self, path: str, bound: float) -> Iterator[Any]:
        """The JSON events of a text/event-stream (`data: {...}` lines), until the
        server ends the stream or `bound` seconds have passed (then HttpError). Its own
        connection: the session's kept-alive one stays free for other calls."""
        cls = (http.client.HTTPSConnection if self.scheme == "https"
               else http.client.HTTPConnection)
        deadline = time.monotonic() + bound
        conn = cls(self.host, self.port, timeout=min(self.timeout, bound))
        try:
            conn.request("GET", f"{self.prefix}/{path.lstrip('/')}", headers={
                **self.headers, "Accept": "text/event-stream"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise HttpError(f"GET {path}: HTTP {resp.status} "
                                f"{resp.read()[:160].decode('utf-8', 'replace')}",
                                resp.status, resp.status >= 500)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HttpError(f"GET {path}: no end within {bound:g}s")
                if conn.sock is not None:
                    conn.sock.settimeout(left)
                line = resp.readline()
                if not line:
                    return
                if line.startswith(b"data:"):
                    try:
                        yield jsonlib.loads(line[5:])
                    except ValueError:
                        continue
        except socket.timeout:
            raise HttpError(f"GET {path}: no end within {bound:g}s")
        except (OSError, http.client.HTTPException) as exc:
            raise HttpError(f"GET {path}: cannot connect to {self.base_url} "
                            f"({getattr(exc, 'strerror', None) or type(exc).__name__})")
        finally:
            conn.close()
