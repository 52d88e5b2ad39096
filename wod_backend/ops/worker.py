"""Managing the resident worker (cli/worker.py serves): whether it runs, starting it in
the background where systemd does not run it, stopping it, and `setup`'s step for it.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError
from wod_backend.ops.hostconf import Change, ensure_file
from wod_backend.ops.mailconf import systemd_is_init
from wod_backend.state.files import WORKER_PID as PID_FILE
from wod_backend.state.files import WORKER_SOCKET as SOCKET
from wod_backend.state.files import pid_alive


def running(cfg: Config) -> Optional[int]:
    """The pid of this configuration's worker, if it runs and listens."""
    try:
        pid = int((cfg.state_dir / PID_FILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) and (cfg.state_dir / SOCKET).is_socket() else None


def start(cfg: Config, wait: float = 20) -> int:
    """`worker run` in the background (its own session, output to the log)."""
    pid = running(cfg)
    if pid is not None:
        return pid
    assert cfg.path is not None
    argv = [str(Path(sys.executable).parent / "wod-backend"), "--config", str(cfg.path),
            "worker", "run"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd="/", start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and running(cfg) is None and proc.poll() is None:
        time.sleep(0.05)
    return running(cfg) or proc.pid


def stop(cfg: Config, wait: float = 60) -> bool:
    """Stop the worker (its running orders finish first); whether one was running."""
    pid = running(cfg)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    # It removes its pid file last; a zombie (nobody reaps it) counts as gone.
    while time.monotonic() < deadline and (cfg.state_dir / PID_FILE).exists() and \
            pid_alive(pid):
        time.sleep(0.05)
    return True


# -- setup's step -------------------------------------------------------------------------

def unit(cfg: Config) -> bytes:
    """The systemd service: the backend user's, running orders to their end on stop."""
    assert cfg.path is not None
    wod = Path(sys.executable).parent / "wod-backend"
    return (f"[Unit]\nDescription=wod-backend: the resident worker for order mails\n"
            f"After=network.target\n\n[Service]\nType=simple\nUser={cfg.mail.backend_user}\n"
            f"Environment=WOD_BACKEND_CONFIG={cfg.path.resolve()}\n"
            f"ExecStart={wod} worker run\nRestart=on-failure\nKillMode=mixed\n"
            f"TimeoutStopSec=600\n\n[Install]\nWantedBy=multi-user.target\n").encode()


UNIT = "wod-backend-worker.service"


def ensure_worker(cfg: Config, apply: bool) -> list[Change]:
    """The worker running the installed code as the backend user (mail.worker), as a
    systemd service where systemd is PID 1, else started now (and by cron at boot)."""
    if not cfg.mail.worker or not cfg.mail.backend_user:
        if running(cfg) is None:
            return []
        if apply:
            stop(cfg)
        return [Change("worker", "stopped (mail.worker is false)")]
    if systemd_is_init():
        changes = ensure_file(cfg.setup.systemd_dir / UNIT, unit(cfg), 0o644, None,
                              "worker", apply)
        if running(cfg) is not None and version(cfg) != code_stamp():
            changes.append(Change("worker", "restarted on the installed code"))
        if apply:
            subprocess.run(["systemctl", "daemon-reload"], check=True, capture_output=True)
            verb = "restart" if changes else "start"
            subprocess.run(["systemctl", "enable", UNIT], check=True, capture_output=True)
            subprocess.run(["systemctl", verb, UNIT], check=True, capture_output=True)
        return changes
    pid = running(cfg)
    if pid is not None and version(cfg) == code_stamp():
        return []
    what = "started" if pid is None else "restarted on the installed code"
    if apply:
        if pid is not None:
            stop(cfg)
        _start_as_backend_user(cfg)
        if running(cfg) is None:
            raise ConfigError(f"the worker did not start: see {cfg.state_dir}/wod-backend.log")
    return [Change("worker", f"{what} as {cfg.mail.backend_user}")]


def _start_as_backend_user(cfg: Config) -> None:
    assert cfg.path is not None
    pw = pwd.getpwnam(cfg.mail.backend_user)
    wod = Path(sys.executable).parent / "wod-backend"
    subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                    "--init-groups", str(wod), "--config", str(cfg.path), "worker", "start"],
                   check=True, capture_output=True, timeout=60, cwd="/")


def code_stamp() -> str:
    """What identifies the package's code on disk: a hash of its modules' names, sizes
    and modification times. A worker keeps the code it imported at its start; setup
    restarts it when this differs (an upgrade, or an edited checkout)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        st = path.stat()
        digest.update(f"{path.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def record(cfg: Config) -> None:
    """The running worker's pid file: its pid, then the code_stamp() it started with."""
    (cfg.state_dir / PID_FILE).write_text(f"{os.getpid()}\n{code_stamp()}\n")


def version(cfg: Config) -> Optional[str]:
    """The code_stamp() the running worker started with (its pid file's second line)."""
    try:
        lines = (cfg.state_dir / PID_FILE).read_text().split()
    except OSError:
        return None
    return lines[1] if len(lines) > 1 else None
