"""The client side of the resident worker: `wod-backend mail` handing its mail over.

procmail starts one `wod-backend mail` per mail, and each used to pay Python's start
and the imports of a whole order (~0.3 s of CPU, measured: most of a burst's time on
two cores). When the worker of this configuration listens (`state_dir/worker.sock`,
the backend user's, in the 0700 state directory), this process passes it its standard
input, output and error (SCM_RIGHTS) and waits for the exit code: the worker's child
runs the very same `mail` command on them, so it reads the mail, journals it before
anything is done, prints and exits exactly as it would here. Only the configuration
is read first (to find state_dir); nothing of click or the order path is imported.

No worker, a stale socket, root (which hands commands to state_dir's owner itself),
anything but a plain `[--config FILE] mail [--dry-run] [--json]`, or streams that are
not real descriptors (an in-process test runner): None, and the command runs here.
A worker that dies before it answered: 75, so that postfix delivers the mail again
(the journal's duplicate check keeps a finished order from running twice).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Optional

from wod_backend.errors import EX_TEMPFAIL


def mail_args(args: list[str]) -> Optional[tuple[Optional[str], list[str]]]:
    """(the --config value, mail's own options) when `args` is a plain mail command."""
    config: Optional[str] = None
    rest = list(args)
    if rest[:1] == ["--config"] and len(rest) > 1:
        config, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--config="):
        config, rest = rest[0].split("=", 1)[1], rest[1:]
    if rest[:1] != ["mail"] or not set(rest[1:]) <= {"--dry-run", "--json"}:
        return None
    return config, rest[1:]


def _real_streams() -> bool:
    try:
        return (sys.stdin.fileno(), sys.stdout.fileno(), sys.stderr.fileno()) == (0, 1, 2)
    except (AttributeError, OSError, ValueError):
        return False


def socket_path(config: Optional[str]) -> Optional[Path]:
    """Where this configuration's worker listens, if the configuration loads."""
    from wod_backend import config as configmod
    from wod_backend.errors import WodError
    from wod_backend.state.files import WORKER_SOCKET

    try:
        return configmod.load(config).state_dir / WORKER_SOCKET
    except WodError:
        return None  # the command run here reports it properly


def hand_over(args: list[str]) -> Optional[int]:
    """The worker's exit code for this mail, or None to run it in this process."""
    parsed = mail_args(args)
    if parsed is None or os.geteuid() == 0 or not _real_streams():
        return None
    path = socket_path(parsed[0])
    if path is None or not path.is_socket():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(2)
        conn.connect(str(path))
        conn.settimeout(None)  # the order may run its hooks for minutes
        request = json.dumps({"args": args}).encode()
        socket.send_fds(conn, [request], [0, 1, 2])
    except OSError:
        conn.close()
        return None  # not listening (a stale socket): run it here
    try:
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
        return int(json.loads(answer)["code"])
    except (OSError, ValueError, KeyError, TypeError):
        sys.stderr.write("wod-backend: temporary failure: the worker ended before "
                         "answering; the mail will be delivered again\n")
        return EX_TEMPFAIL
    finally:
        conn.close()
