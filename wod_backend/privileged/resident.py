"""The resident privileged side (privileged.resident): the sudo helper, started once.

Each order's root steps cost a `sudo` and a Python start with the helper's imports
(about 0.1 s, 0.2 s of CPU under load: most of a burst's CPU). Here one root process,
`wod-backend privd run`, imports all of it once and listens on a root-owned socket,
`/run/wod-backend-priv/<backend user>.sock` (root:<backend group>, 0660, in a root-owned
0755 folder). For each connection it forks a child that:

1. checks the peer's credentials (SO_PEERCRED): the backend user (or root) only, as
   the one sudoers rule allows;
2. checks that the code on disk is the code it imported (a stale daemon serves nothing:
   it stops, the schedule starts the current one, the order goes through sudo meanwhile);
3. says it is ready, then runs the sudo helper's own `main` with the connection as its
   standard input and output: the configuration checked (root's) and loaded afresh, every
   request decoded and checked field by field, the trust checks of code and content,
   exactly as under sudo. It is one more implementation of the one root-side interface
   (privileged/root_side.py), not another code path.

The client (`ResidentHelper`) connects at the order's first root step; no daemon, a
refused peer or a stale daemon: the order uses the sudo helper, as before.
"""

from __future__ import annotations

import json
import os
import pwd
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

from wod_backend.errors import ConfigError
from wod_backend.privileged.client import (READY, SOCKET_DIR, pid_path, root_only,
                                           socket_path)
from wod_backend.privileged.request import Answer
from wod_backend.system.run import listen_unix, reap

MAX_CHILDREN = 64

# -- the daemon (root) ---------------------------------------------------------------------

def preload() -> None:
    """What the helper's steps import, imported once."""
    import jinja2  # noqa: F401
    import yaml  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401

    from wod_backend.privileged import helper  # noqa: F401
    from wod_backend.system import (accounts, backups, completion, delivery, disk,  # noqa: F401
                                    homes, kill, limits, passwords, root_steps, templating)


def serve(config_path: Path) -> int:
    """Serve the backend user's root requests until SIGTERM."""
    from wod_backend import config
    from wod_backend.privileged.helper import check_config_file
    from wod_backend.system.trust import code_stamp

    if os.geteuid() != 0:
        raise ConfigError("privd runs as root")
    check_config_file(config_path)
    cfg = config.load(str(config_path))
    peer_uids = {0}
    gid = 0
    if cfg.mail.backend_user:
        pw = pwd.getpwnam(cfg.mail.backend_user)
        peer_uids.add(pw.pw_uid)
        gid = pw.pw_gid
    preload()
    stamp = code_stamp()
    os.umask(0o022)
    os.chdir("/")
    path = socket_path(cfg)
    listener = _listen(path, gid)
    pid_path(cfg).write_text(f"{os.getpid()}\n{stamp}\n{config_path}\n")
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    children: set[int] = set()
    try:
        while not stopping:
            reap(children)
            try:
                ready = select.select([listener], [], [], 0.5)[0]
            except InterruptedError:
                continue
            if ready:
                _accept(listener, children, config_path, peer_uids, stamp)
    finally:
        listener.close()
        path.unlink(missing_ok=True)
        pid_path(cfg).unlink(missing_ok=True)
        deadline = time.monotonic() + 600
        while children and time.monotonic() < deadline:
            reap(children)
            time.sleep(0.05)
    return 0


def _listen(path: Path, gid: int) -> socket.socket:
    """The socket, root's and the backend user's group's (0660), in root's own folder."""
    SOCKET_DIR.mkdir(mode=0o755, exist_ok=True)
    if not root_only(SOCKET_DIR):
        raise ConfigError(f"{SOCKET_DIR} must be root's alone")
    listener = listen_unix(path)
    os.chown(path, 0, gid)
    os.chmod(path, 0o660)
    return listener


def _accept(listener: socket.socket, children: set[int], config_path: Path,
            peer_uids: set[int], stamp: str) -> None:
    try:
        conn, _ = listener.accept()
    except OSError:
        return
    if len(children) >= MAX_CHILDREN:  # the client goes through sudo for this order
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        listener.close()
        code = 70
        try:
            code = _child(conn, config_path, peer_uids, stamp)
        finally:
            os._exit(code)
    children.add(pid)
    conn.close()


def _child(conn: socket.socket, config_path: Path, peer_uids: set[int], stamp: str) -> int:
    from wod_backend.privileged import helper
    from wod_backend.system.trust import code_stamp

    uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                              struct.calcsize("3i")))[1]
    if uid not in peer_uids:
        conn.sendall(json.dumps(Answer.refused(77, f"uid {uid} may not ask root").to_json())
                     .encode() + b"\n")
        return 77
    if code_stamp() != stamp:  # upgraded underneath: stop; this order goes through sudo
        os.kill(os.getppid(), signal.SIGTERM)
        return 75
    conn.sendall(READY)
    for fd in (0, 1):
        os.dup2(conn.fileno(), fd)
    conn.close()
    try:
        helper.main(["--config", str(config_path)])
    except SystemExit as exc:
        sys.stdout.flush()
        return exc.code if isinstance(exc.code, int) else 0
    return 0
