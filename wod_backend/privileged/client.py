"""The caller's side of the sudo helper: one sudo run per order, several requests.

The backend user (procmail's) runs unprivileged; the steps that need root on a student
(StepKind specs with root=True) go through `sudo -n wod-backend-priv`, allowed by one
sudoers rule that pins the program and the configuration (scripts/sudoers.example).
One helper serves the whole order over its pipes: each group of root steps, of one
student or of a batch's students at once, is one JSON line on its stdin (the password
never touches argv) answered by one JSON line; the helper checks every request alone.
Only what the frontend may narrow travels with a request: root takes everything else
that steers it (range, appliances, what to compile) from wod.yml itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import socket
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Optional

from wod_backend.config import Config
from wod_backend.errors import StepFailed
from wod_backend.privileged.request import Answer, Request, StepsRequest, encode
from wod_backend.system.run import PIPE, Process, TimeoutExpired, start


def use_sudo(cfg: Config) -> bool:
    """auto: in-process when running as root (or without accounts), else through sudo."""
    mode = cfg.privileged.mode
    if mode == "auto":
        return os.geteuid() != 0 and cfg.students.manage_accounts
    return mode == "sudo"


def helper_path(cfg: Config) -> str:
    return str(cfg.privileged.helper or Path(sys.executable).parent / "wod-backend-priv")


def read_line(fd: int, buffer: bytes, timeout: float) -> tuple[Optional[bytes], bytes]:
    """One answer line from `fd` (what is buffered first), and what came after it; None
    when none came within `timeout` seconds. At the end of input: what there was."""
    deadline = time.monotonic() + timeout
    while b"\n" not in buffer:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None, buffer
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
    line, _, rest = buffer.partition(b"\n")
    return line, rest


class SudoHelper:
    """One `sudo -n wod-backend-priv` for the order, started at its first root step."""

    groups_steps = True

    def __init__(self, cfg: Config, content: Optional[dict[str, str]] = None):
        self.cfg = cfg
        self.content = content  # the content root (a release) the order planned with
        self._proc: Optional[Process] = None
        self._errors: Optional[IO[bytes]] = None
        self._buffer = b""

    def ask(self, request: Request) -> Answer:
        """One request, answered: started at the order's first, pinned to its content
        tree (a release, `content update`)."""
        if isinstance(request, StepsRequest) and self.content:
            request = dataclasses.replace(request, content=self.content)
        return self._ask(request)

    def _start(self) -> Process:
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._errors = tempfile.TemporaryFile()
            argv = ["sudo", "-n", helper_path(self.cfg), "--config", str(self.cfg.path)]
            self._proc = start(argv, stdin=PIPE, stdout=PIPE, stderr=self._errors, cwd=None)
            self._buffer = b""
        return self._proc

    def _ask(self, request: Request) -> Answer:
        proc = self._start()
        assert proc.stdin is not None
        try:
            proc.stdin.write(encode(request))
            proc.stdin.flush()
        except BrokenPipeError:
            pass  # it refused and left: its answer (or its exit) says why
        line = self._read_line(proc, self.cfg.privileged.timeout)
        try:
            return Answer.from_json(json.loads(line))
        except (ValueError, TypeError, AttributeError):
            raise StepFailed(f"privileged helper: {self._why(proc)}")

    def _read_line(self, proc: Process, timeout: float) -> bytes:
        assert proc.stdout is not None
        line, self._buffer = read_line(proc.stdout.fileno(), self._buffer, timeout)
        if line is None:
            self._kill(proc)
            raise StepFailed(f"privileged helper timed out after {timeout:g}s")
        return line

    def _why(self, proc: Process) -> str:
        try:
            rc = proc.wait(10)
        except TimeoutExpired:
            self._kill(proc)
            rc = proc.wait()
        tail = b""
        if self._errors is not None:
            self._errors.seek(0)
            tail = self._errors.read()[-600:]
        text = " / ".join(tail.decode("utf-8", "replace").strip().splitlines()[-3:])
        return f"exited {rc}: {text}" if text else f"exited {rc}"

    @staticmethod
    def _kill(proc: Process) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        """End the helper: end of its input, then it exits."""
        proc, self._proc = self._proc, None
        if proc is not None:
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                proc.wait(30)
            except TimeoutExpired:
                self._kill(proc)
                proc.wait()
            proc.stdout.close()
        if self._errors is not None:
            self._errors.close()
            self._errors = None


# -- the resident privileged side (privileged/resident.py serves it) ---------------------

SOCKET_DIR = Path("/run/wod-backend-priv")
READY = b'{"ready": true}\n'


def socket_path(cfg: Config) -> Path:
    return SOCKET_DIR / f"{cfg.mail.backend_user or 'root'}.sock"


def pid_path(cfg: Config) -> Path:
    return SOCKET_DIR / f"{cfg.mail.backend_user or 'root'}.pid"


def root_only(path: Path, group_may_write: bool = False) -> bool:
    """Root's, not a link, writable by nobody else (the socket: its group, the backend
    user's, may write: that is how it connects)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    others = 0o002 if group_may_write else 0o022
    return st.st_uid == 0 and not st.st_mode & others and not stat.S_ISLNK(st.st_mode)


class ResidentHelper:
    """The root side through the resident daemon, else (none, refused, stale) through
    the sudo helper; chosen at the order's first root step."""

    groups_steps = True

    def __init__(self, cfg: Config, content: Optional[dict[str, str]] = None):
        self.cfg, self.content = cfg, content
        self._sock: Optional[socket.socket] = None
        self._buffer = b""
        self._sudo: Optional[SudoHelper] = None
        self._tried = False

    def _connect(self) -> Optional[socket.socket]:
        path = socket_path(self.cfg)
        if not (root_only(SOCKET_DIR) and root_only(path, group_may_write=True)):
            return None  # only root's own socket hears a password
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(5)
            sock.connect(str(path))
            if self._line(sock, 5) == READY.strip():
                return sock
        except OSError:
            pass
        sock.close()
        return None

    def _line(self, sock: socket.socket, timeout: float) -> bytes:
        line, self._buffer = read_line(sock.fileno(), self._buffer, timeout)
        if line is None:
            raise StepFailed(f"privileged side timed out after {timeout:g}s")
        return line

    def ask(self, request: Request) -> Answer:
        if not self._tried:
            self._tried = True
            self._sock = self._connect()
        if self._sock is None:
            if self._sudo is None:
                self._sudo = SudoHelper(self.cfg, self.content)
            return self._sudo.ask(request)
        if isinstance(request, StepsRequest) and self.content:
            request = dataclasses.replace(request, content=self.content)
        self._sock.settimeout(None)
        try:
            self._sock.sendall(encode(request))
        except OSError:
            pass  # it refused and left: its answer (or its end) says why
        line = self._line(self._sock, self.cfg.privileged.timeout)
        try:
            return Answer.from_json(json.loads(line))
        except (ValueError, TypeError, AttributeError):
            raise StepFailed("privileged side: closed without an answer")

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self._sudo is not None:
            self._sudo.close()
            self._sudo = None
