"""The resident worker: mails run in children of one warm process of the backend user.

`wod-backend worker run` imports everything an order needs once, then listens on
`state_dir/worker.sock` (0600 in the 0700 state directory: only the backend user, and
root, can connect). For each mail, `wod-backend mail` (worker/handoff.py) passes its
stdin, stdout and stderr; the worker forks a child that takes them as its own and runs
the ordinary `mail` command (cli/dispatch.py): the same journal entry written before
anything is done, the same output, the same exit code, which goes back to the waiting
`mail` process and from it to procmail and postfix. The parent never opens the journal
(SQLite's locks do not survive fork()) and is single-threaded, so each child starts
clean. The worker is the backend user's: root's steps go to the resident privileged
side (privileged/resident.py) or through sudo and the helper.

Where systemd is PID 1, `setup` installs it as a service; elsewhere `worker start` runs
it in the background (pid file in state_dir) and `worker stop|status` manage it
(worker/service.py). Once stopped (or crashed), `mail` runs each order in its own process
as before.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Callable

from wod_backend.config import Config
from wod_backend.errors import EX_SOFTWARE
from wod_backend.execution import confirm
from wod_backend.system.run import listen_unix, reap
from wod_backend.state.files import WORKER_PID as PID_FILE
from wod_backend.state.files import WORKER_SOCKET as SOCKET

log = logging.getLogger(__name__)
Runner = Callable[[list[str]], None]



def preload() -> None:
    """What an order imports, imported once here instead of in every mail's process."""
    import email.parser  # noqa: F401
    import http.client  # noqa: F401
    import sqlite3  # noqa: F401

    import jinja2  # noqa: F401
    import yaml  # noqa: F401
    from cryptography.hazmat.primitives import serialization  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401

    from wod_backend.execution import gate, order_run, reporting  # noqa: F401
    from wod_backend.state import journal, outbox  # noqa: F401
    from wod_backend.intake import pipeline, policy, workshop_flags  # noqa: F401
    from wod_backend.remote import clients, ldap  # noqa: F401
    ldap.preload()


def serve(cfg: Config, run: Runner) -> int:
    """Serve mails until SIGTERM; then let the running orders finish. Each child runs
    its mail through `run` (cli.dispatch.dispatch, given by the `worker run` command)."""
    assert cfg.path is not None
    preload()
    path = cfg.state_dir / SOCKET
    worker = Worker(cfg, run, listen_unix(path))
    from wod_backend.worker.handoff import remember
    from wod_backend.worker.service import record

    record(cfg)
    remember(str(cfg.path), str(path))  # mails naming this file come straight here
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    log.info("worker %s serving %s", os.getpid(), path)
    try:
        while not stopping:
            worker.step()
    finally:
        worker.sock.close()
        path.unlink(missing_ok=True)
        (cfg.state_dir / PID_FILE).unlink(missing_ok=True)
        worker.drain(deadline=time.monotonic() + 600)
    return 0


class Worker:
    """The parent: accepts mails, forks their children, and forks the background hub
    confirmations their orders ask for over a pipe (execution/confirm.py's channel):
    a fork of this clean, warm process instead of a new interpreter for each."""

    def __init__(self, cfg: Config, run: Runner, sock: socket.socket):
        self.cfg, self.run, self.sock = cfg, run, sock
        self.orders: set[int] = set()
        self.confirmers: set[int] = set()
        self.channels: dict[int, bytearray] = {}  # read end -> what came so far

    def step(self) -> None:
        reap(self.orders, block=False)
        reap(self.confirmers, block=False)
        listening = self.sock.fileno()
        try:
            ready = select.select([listening, *self.channels], [], [], 0.5)[0]
        except InterruptedError:
            return
        for fd in ready:
            if fd == listening:
                self.accept()
            else:
                self.read_channel(fd)

    def drain(self, deadline: float) -> None:
        """Let the running orders end (and hand over their confirmations)."""
        while (self.orders or self.channels) and time.monotonic() < deadline:
            reap(self.orders, block=False)
            for r in select.select(list(self.channels), [], [], 0.2)[0]:
                self.read_channel(r)

    def accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        try:
            conn.settimeout(5)
            msg, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
            request = json.loads(msg)
            options = [o for o in request.get("args", []) if o in ("--dry-run", "--json")]
            if len(fds) != 3:
                raise ValueError("expected three descriptors")
        except (OSError, ValueError, AttributeError):
            conn.close()
            return
        client = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                     struct.calcsize("3i")))[0]
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: this mail's own process
            self._close_all(keep=w)
            _child(self.cfg, self.run, conn, fds, options, w)
        log.info("worker: mail of process %s runs in child %s", client, pid)
        self.orders.add(pid)
        os.close(w)
        self.channels[r] = bytearray()
        for fd in fds:
            os.close(fd)
        conn.close()

    def read_channel(self, r: int) -> None:
        data = os.read(r, 65536)
        buf = self.channels[r]
        buf.extend(data)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            self.confirm(line)
        if not data:
            os.close(r)
            del self.channels[r]

    def confirm(self, line: bytes) -> None:
        try:
            request = json.loads(line)
            entry, keys = int(request["entry"]), {str(k) for k in request["keys"]}
        except (ValueError, KeyError, TypeError):
            log.error("worker: a malformed confirmation request ignored")
            return
        pid = os.fork()
        if pid == 0:
            self._close_all(keep=-1)
            code = 1
            try:
                code = confirm.run_here(self.cfg, entry, keys)
            finally:
                os._exit(code)
        log.info("worker: hub calls of order %s confirmed by child %s", entry, pid)
        self.confirmers.add(pid)

    def _close_all(self, keep: int) -> None:
        """In a fresh child: none of the parent's socket and pipes but `keep`."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        self.sock.close()
        for fd in self.channels:
            if fd != keep:
                os.close(fd)


def _child(cfg: Config, run: Runner, conn: socket.socket, fds: list[int],
           options: list[str], channel: int) -> None:
    code = EX_SOFTWARE
    try:
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        confirm.use_channel(channel)
        try:
            run(["--config", str(cfg.path), "mail", *options])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        conn.sendall(json.dumps({"code": code}).encode() + b"\n")
    except BaseException:
        log.exception("worker child")
    finally:
        os._exit(0)
