"""A local HTTP server that implements the frontend's contract (docs/protocol.md, "Calls to the frontend").

It behaves as the reference api-db server was verified to: tokens in `x-access-token`
that expire, 401/403/404 as documented, 200-and-nothing-changed without a JSON content
type, and a hang (no answer at all) on empty, null, non-number or fractional values.
Switches let a test cut it off (`outage`: connections closed without an answer), make
it slow, or make it fail with 500. Every accepted PUT is logged in `puts`.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

HANG_SECONDS = 30.0


@dataclass
class State:
    users: dict[str, tuple[str, list[str]]] = field(default_factory=lambda: {
        "moderator": ("mod-Secret1", ["moderator"]), "visitor": ("vis-Secret1", ["user"])})
    token_ttl: float = 180.0
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    students: dict[int, dict[str, Any]] = field(default_factory=dict)
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    workshops: dict[int, dict[str, Any]] = field(default_factory=dict)
    # The locations table as GET /locations returns it: port a string, basestdid a
    # number or null (the seeder's and the installer's rows).
    locations: list[dict[str, Any]] = field(default_factory=list)
    puts: list[tuple[float, str, dict]] = field(default_factory=list)
    logins: int = 0
    outage: bool = False
    delay: float = 0.0
    fail_500: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def _bool(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    return None


def _whole(value: Any) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class Handler(BaseHTTPRequestHandler):
    server: "FrontendServer"
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle and the
    # client's delayed ACK add 40 ms to every answer, which no real server does.
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _hang(self) -> None:
        """What the reference server does on values it cannot store: never answer."""
        time.sleep(HANG_SECONDS)
        self.close_connection = True

    def _body(self) -> tuple[bool, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if "application/json" not in (self.headers.get("Content-Type") or ""):
            return False, None
        try:
            return True, json.loads(raw or b"{}")
        except ValueError:
            return False, None

    def _gate(self) -> bool:
        st = self.server.state
        if st.outage:
            self.close_connection = True
            self.connection.shutdown(2)  # hang up without a word
            return False
        if st.delay:
            time.sleep(st.delay)
        if st.fail_500:
            self._send(500, {"message": "internal error"})
            return False
        return True

    def _auth(self) -> bool:
        st = self.server.state
        token = self.headers.get("x-access-token")
        if not token:
            self._send(403, {"message": "No token provided!"})
            return False
        with st.lock:
            found = st.tokens.get(token)
        if found is None or found[1] < time.time():
            self._send(401, {"message": "Unauthorized!"})
            return False
        if "moderator" not in st.users[found[0]][1]:
            self._send(403, {"message": "Require Moderator Role!"})
            return False
        return True

    def do_POST(self) -> None:
        ok, body = self._body()
        if not self._gate():
            return
        st = self.server.state
        if self.path.rstrip("/") != "/api/login" or not ok or not isinstance(body, dict):
            self._send(404, {"message": "Not found"})
            return
        user = st.users.get(body.get("username"))
        if user is None:
            self._send(404, {"message": "User Not found."})
            return
        if body.get("password") != user[0]:
            self._send(401, {"accessToken": None, "message": "Invalid Password!"})
            return
        token = secrets.token_hex(16)
        with st.lock:
            st.tokens[token] = (body["username"], time.time() + st.token_ttl)
            st.logins += 1
        self._send(200, {"username": body["username"], "accessToken": token})

    def do_GET(self) -> None:
        if not self._gate():
            return
        st = self.server.state
        path = self.path.rstrip("/")
        if path == "/api/workshops":
            self._send(200, list(st.workshops.values()))
            return
        if path == "/api/locations":  # no token needed, as on the reference server
            self._send(200, st.locations)
            return
        if path == "/api/students":
            if not self._auth():
                return
            self._send(200, list(st.students.values()))
            return
        m = re.fullmatch(r"/api/workshops/(\d+)", path)
        if m:
            row = st.workshops.get(int(m.group(1)))
            self._send(200 if row else 404, row or {"message": "Not found"})
            return
        m = re.fullmatch(r"/api/customers/(\d+)", path)
        if m:
            if not self._auth():
                return
            row = st.customers.get(int(m.group(1)))
            self._send(200 if row else 404, row or {"message": "Not found"})
            return
        self._send(404, {"message": "Not found"})

    def do_PUT(self) -> None:
        # Read the body first: an early answer would leave it in a kept-alive connection.
        ok, body = self._body()
        if not self._gate():
            return
        st = self.server.state
        m = re.fullmatch(r"/api/(student|customer|workshop)/(\d+)", self.path.rstrip("/"))
        if not m:
            self._send(404, {"message": "Not found"})
            return
        if not self._auth():
            return
        kind, rid = m.group(1), int(m.group(2))
        table = {"student": st.students, "customer": st.customers,
                 "workshop": st.workshops}[kind]
        if not ok or not isinstance(body, dict):
            self._send(200, table.get(rid) or {})  # no JSON content type: nothing changes
            return
        clean: dict[str, Any] = {}
        for key, value in body.items():
            if key in ("assigned", "active", "cleaned"):
                clean[key] = _bool(value)
            elif key in ("completionPercentage", "capacity"):
                clean[key] = _whole(value)
            elif key == "password":
                clean[key] = value if isinstance(value, str) and value else None
            else:
                clean[key] = value
            if clean[key] is None:
                self._hang()
                return
        with st.lock:
            if rid not in table:
                self._send(400, {"message": f"{kind} {rid} not found"})
                return
            table[rid].update(clean)
            st.puts.append((time.time(), f"{kind}/{rid}", dict(clean)))
            row = dict(table[rid])
        self._send(200, row)


class FrontendServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0):
        super().__init__(("127.0.0.1", port), Handler)
        self.state = State()
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"

    def start(self) -> "FrontendServer":
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    # -- fixtures for tests ------------------------------------------------------------
    def add_students(self, ids: range) -> None:
        for i in ids:
            self.state.students[i] = {"id": i, "password": "", "assigned": True}

    def add_location(self, name: str, basestdid: Any = 0, proto: str = "http",
                     port: Any = "8000", base: Optional[int] = None) -> dict:
        """A locations row and its students' url/location, as the seeder writes them:
        url `proto://name:port/user/studentN/lab?` for the row N + base (basestdid,
        unless the row's basestdid is wrong or null)."""
        row = {"id": len(self.state.locations) + 1, "name": name, "basestdid": basestdid,
               "proto": proto, "port": port, "createdAt": "2026-12-01T10:00:00.000Z",
               "updatedAt": None}
        self.state.locations.append(row)
        base = int(basestdid or 0) if base is None else base
        for sid, student in self.state.students.items():
            n = sid - base
            student.update(location=name, username=f"student{n}",
                           url=f"{proto}://{name}:{port}/user/student{n}/lab?")
        return row

    def add_customer(self, cid: int, **fields: Any) -> dict:
        row = {"id": cid, "active": False, "cleaned": False, "completionPercentage": 0,
               **fields}
        self.state.customers[cid] = row
        return row

    def add_workshop(self, wid: int, notebook: str, **fields: Any) -> dict:
        row = {"id": wid, "name": notebook, "notebook": notebook, "reset": False,
               "ldap": False, "varpass": False, "compile": False, "monoappliance": False,
               "multiappliance": False, "range": [1, 100], "capacity": 10, **fields}
        self.state.workshops[wid] = row
        return row

    def puts_for(self, path: str) -> list[dict]:
        return [body for _t, p, body in self.state.puts if p == path]


def serve_forever(port: int) -> None:  # pragma: no cover - manual use
    FrontendServer(port).serve_forever()
