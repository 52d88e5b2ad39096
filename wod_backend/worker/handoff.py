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

Finding the socket costs a configuration load (PyYAML, the sections' dataclasses,
validation: 50 of the 75 ms this process took, measured). The worker records where it
listens for its configuration file, as that file is (device, inode, times, size), in
the backend user's own `~/.cache/wod-backend/worker-sockets`; a mail naming that very
file goes straight to the socket, importing nothing but `socket`. A changed file, no
record or a socket that does not answer: the configuration is loaded as before (and
the record made again). The record is the backend user's, like state_dir; root never
reads it.
"""

from __future__ import annotations

import os
import socket
import sys

from wod_backend.errors import EX_TEMPFAIL

RECORD = os.path.join(".cache", "wod-backend", "worker-sockets")
KEEP = 16  # configurations recorded (a host has one; tests have a few)


def mail_args(args: list[str]) -> tuple[str | None, list[str]] | None:
    """(the --config value, mail's own options) when `args` is a plain mail command."""
    config: str | None = None
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


def socket_path(config: str | None) -> str | None:
    """Where this configuration's worker listens, if the configuration loads."""
    from wod_backend import config as configmod
    from wod_backend.errors import WodError
    from wod_backend.state.files import WORKER_SOCKET

    try:
        return str(configmod.load(config).state_dir / WORKER_SOCKET)
    except WodError:
        return None  # the command run here reports it properly


def _record_file() -> str:
    import pwd

    return os.path.join(pwd.getpwuid(os.getuid()).pw_dir, RECORD)


def _version(config: str) -> str | None:
    """The configuration file as it is now: a record made for another version of it
    (edited, replaced, moved) does not match."""
    try:
        st = os.stat(config)
    except OSError:
        return None
    return (f"{os.path.abspath(config)}\t{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:"
            f"{st.st_ctime_ns}:{st.st_size}")


def recall(config: str) -> str | None:
    """The socket recorded for this very configuration file, if any."""
    version = _version(config)
    try:
        with open(_record_file(), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, KeyError, UnicodeDecodeError):
        return None
    for line in lines:
        head, _, sock = line.rpartition("\t")
        if version and head == version:
            return sock
    return None


def remember(config: str, sock: str) -> None:
    """Record where the worker of this configuration file listens (the worker at its
    start, a client that had to load the configuration); never as root."""
    version = _version(config)
    if version is None or os.geteuid() == 0 or "\n" in version + sock:
        return
    path = _record_file()
    name = version.split("\t", 1)[0] + "\t"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        try:
            with open(path, encoding="utf-8") as fh:
                kept = [line for line in fh.read().splitlines()
                        if not line.startswith(name)]
        except (OSError, UnicodeDecodeError):
            kept = []
        tmp = f"{path}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(f"{line}\n" for line in [*kept[-(KEEP - 1):],
                                                      f"{version}\t{sock}"]))
        os.replace(tmp, path)
    except (OSError, KeyError):
        pass  # no record: the next mail loads the configuration


def _quoted(text: str) -> str:
    """A JSON string (the json module costs 8 ms to import)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in out) + '"'


def _send(path: str, request: bytes) -> socket.socket | None:
    """Connected to the worker at `path`, the mail's descriptors passed; None when
    nothing answers there (no worker, a stale socket): the mail is still unread."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(2)
        conn.connect(path)
        conn.settimeout(None)  # the order may run its hooks for minutes
        socket.send_fds(conn, [request], [0, 1, 2])
        return conn
    except OSError:
        conn.close()
        return None


def hand_over(args: list[str]) -> int | None:
    """The worker's exit code for this mail, or None to run it in this process."""
    parsed = mail_args(args)
    if parsed is None or os.geteuid() == 0 or not _real_streams():
        return None
    config = parsed[0]
    request = ('{"args": [' + ", ".join(_quoted(a) for a in args) + "]}").encode()
    recorded = recall(config) if config else None
    conn = _send(recorded, request) if recorded else None
    if conn is None:
        path = socket_path(config)
        conn = _send(path, request) if path else None
        if conn is None or path is None:
            return None  # no worker: run it here
        if config:
            remember(config, path)
    return _answer(conn)


def _answer(conn: socket.socket) -> int:
    """The worker's `{"code": N}` line."""
    try:
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
        head, _, code = answer.strip().rstrip(b"}").partition(b":")
        if head.strip() != b'{"code"':
            raise ValueError(answer)
        return int(code)
    except (OSError, ValueError):
        sys.stderr.write("wod-backend: temporary failure: the worker ended before "
                         "answering; the mail will be delivered again\n")
        return EX_TEMPFAIL
    finally:
        conn.close()
