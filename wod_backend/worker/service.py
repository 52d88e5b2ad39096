"""Managing the resident worker (worker/server.py serves): whether it runs, starting it in
the background where systemd does not run it (as the backend user when root asks),
stopping it, its unit file, and the stamp of the code it loaded (host/setup.py's step
restarts it when the installed code changed).
"""

from __future__ import annotations

import os
import pwd
import sys
import time
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError
from wod_backend.system.run import run, terminate
from wod_backend.system.run import start as start_process
from wod_backend.state.files import WORKER_PID as PID_FILE
from wod_backend.state.files import pid_alive, worker_pid
from wod_backend.system.trust import code_stamp


def running(cfg: Config) -> Optional[int]:
    """The pid of this configuration's worker, if it runs and listens."""
    return worker_pid(cfg.state_dir)


def start(cfg: Config, wait: float = 20) -> int:
    """`worker run` in the background (its own session, output to the log)."""
    pid = running(cfg)
    if pid is not None:
        return pid
    assert cfg.path is not None
    argv = [str(Path(sys.executable).parent / "wod-backend"), "--config", str(cfg.path),
            "worker", "run"]
    proc = start_process(argv)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and running(cfg) is None and proc.poll() is None:
        time.sleep(0.05)
    return running(cfg) or proc.pid


def stop(cfg: Config, wait: float = 60) -> bool:
    """Stop the worker (its running orders finish first); whether one was running."""
    pid = running(cfg)
    if pid is None:
        return False
    # It removes its pid file last; a zombie (nobody reaps it) counts as gone.
    terminate(pid, lambda: not ((cfg.state_dir / PID_FILE).exists() and pid_alive(pid)),
              wait)
    return True


# -- setup's step -------------------------------------------------------------------------

def unit(cfg: Config) -> bytes:
    """The systemd service: the backend user's, running orders to their end on stop."""
    from wod_backend.system.systemd import service_unit

    assert cfg.path is not None
    return service_unit("the resident worker for order mails", cfg.path.resolve(),
                        "worker run", cfg.mail.backend_user)


UNIT = "wod-backend-worker.service"


def start_as_backend_user(cfg: Config) -> None:
    assert cfg.path is not None
    pw = pwd.getpwnam(cfg.mail.backend_user)
    wod = Path(sys.executable).parent / "wod-backend"
    done = run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
                str(wod), "--config", str(cfg.path), "worker", "start"], timeout=60, cwd="/")
    if not done.ok:
        raise ConfigError(f"starting the worker: {done.describe()}: {done.tail(3, 200)}")


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
