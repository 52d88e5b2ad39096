"""The one subprocess wrapper: argv lists only, secrets on stdin, a timeout on every call.

`run` runs a program to its end: a value (`Run`) the caller inspects, never a stream of
exceptions: rc, output, whether it timed out. The output is kept whole (hooks can print
a lot) but callers show only its tail. A timed-out program is killed with its whole
process group. `start` is the one way to start what outlives a call or talks over its
pipes (the hub, the worker, a confirmation, the sudo helper, the switch-user re-exec):
no timeout there, the caller owns the process. Nothing else in the package imports
`subprocess` (tests/unit/test_layout.py). The resident daemons (the worker, privd) also
share here their socket's making (`listen_unix`), their stop (`terminate`) and the
reaping of their children (`reap`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, Mapping, Optional, Sequence, Union

from wod_backend.errors import ConfigError

if TYPE_CHECKING:
    import socket


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    rc: int
    output: str  # stdout and stderr, interleaved
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def tail(self, lines: int = 8, chars: int = 600) -> str:
        text = "\n".join(self.output.rstrip().splitlines()[-lines:])
        return text[-chars:]

    def describe(self) -> str:
        what = os.path.basename(self.argv[0])
        if self.timed_out:
            return f"{what} timed out"
        return f"{what} exited {self.rc}"


def run(argv: Sequence[str], *, input: Optional[bytes] = None, timeout: float = 60,
        env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
        user: Optional[tuple[int, int]] = None) -> Run:
    """Run argv to completion (or timeout) and return what happened; `user` (uid, gid)
    runs it as that user, without any supplementary group (root callers only)."""
    argv = tuple(str(a) for a in argv)
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            start_new_session=True, user=None if user is None else user[0],
            group=None if user is None else user[1],
            extra_groups=None if user is None else [])
    except FileNotFoundError:
        raise ConfigError(f"program not found: {argv[0]}")
    except PermissionError:
        raise ConfigError(f"program not executable: {argv[0]}")
    try:
        out, _ = proc.communicate(input=input, timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        timed_out = True
    return Run(argv, proc.returncode, out.decode("utf-8", "replace"), timed_out)


# For the callers of `start`, so that none of them imports subprocess.
PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT
Process = subprocess.Popen
TimeoutExpired = subprocess.TimeoutExpired
Stream = Union[None, int, IO]


def start(argv: Sequence[str], *, stdin: Stream = DEVNULL, stdout: Stream = DEVNULL,
          stderr: Stream = DEVNULL, cwd: Optional[str] = "/",
          env: Optional[Mapping[str, str]] = None, user: Optional[tuple[int, int]] = None,
          detach: bool = True) -> "subprocess.Popen[bytes]":
    """Start argv and return the process, without waiting: `detach` puts it in a session
    of its own (a service that outlives us); `user` (uid, gid) starts it as that user
    without supplementary groups (root callers only)."""
    try:
        return subprocess.Popen(
            [str(a) for a in argv], stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd,
            env=env, start_new_session=detach, user=None if user is None else user[0],
            group=None if user is None else user[1],
            extra_groups=None if user is None else [])
    except FileNotFoundError:
        raise ConfigError(f"program not found: {argv[0]}")


def reap(children: set[int], block: bool = False) -> None:
    """Forget the children of `children` that ended (waited for: no zombie is left)."""
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


def listen_unix(path: Path) -> "socket.socket":
    """A new Unix socket at `path` (a stale one replaced), its owner's alone (0600) until
    the caller opens it wider, with a backlog for a burst of mails."""
    import socket

    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def terminate(pid: int, gone: Callable[[], bool], wait: float) -> None:
    """SIGTERM to a daemon of ours, then up to `wait` seconds for `gone()`."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not gone():
        time.sleep(0.05)
