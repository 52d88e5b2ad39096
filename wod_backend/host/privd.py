"""Running the resident privileged side (privileged/resident.py): started in the
background by `setup` and by the schedule (a no-op while it runs), or a systemd unit
where systemd is PID 1; restarted by setup when the installed code changed."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError
from wod_backend.host.hostconf import Change, ensure_file
from wod_backend.privileged.client import pid_path
from wod_backend.state.files import pid_alive
from wod_backend.system import systemd
from wod_backend.system.run import start as start_process
from wod_backend.system.run import terminate
from wod_backend.system.trust import code_stamp


def wanted(cfg: Config) -> bool:
    """Whether this configuration runs one: orders go to root through a helper."""
    return cfg.privileged.resident and bool(cfg.mail.backend_user) and \
        cfg.students.manage_accounts and cfg.privileged.mode != "direct"


def unit_name(cfg: Config) -> str:
    return f"wod-backend-privd-{cfg.mail.backend_user}.service"


def unit(cfg: Config) -> bytes:
    assert cfg.path is not None
    return systemd.service_unit(f"the resident privileged side of {cfg.mail.backend_user}",
                                cfg.path.resolve(), "privd run")


def running(cfg: Config) -> Optional[int]:
    """The daemon's pid, if it runs (its pid file, root's)."""
    try:
        pid = int(pid_path(cfg).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid) else None


def version(cfg: Config) -> Optional[str]:
    """The code stamp and configuration the running daemon serves ("STAMP PATH")."""
    try:
        lines = pid_path(cfg).read_text().split("\n")
    except OSError:
        return None
    return f"{lines[1]} {lines[2]}" if len(lines) > 2 else None


def start(cfg: Config, wait: float = 20) -> int:
    if os.geteuid() != 0:
        raise ConfigError("privd start needs root")
    pid = running(cfg)
    if pid is not None:
        return pid
    assert cfg.path is not None
    proc = start_process([str(Path(sys.executable).parent / "wod-backend"), "--config",
                          str(cfg.path.resolve()), "privd", "run"],
                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and running(cfg) is None and \
            proc.poll() is None:
        time.sleep(0.05)
    pid = running(cfg)
    if pid is None:
        raise ConfigError("privd did not start: run `wod-backend privd run` to see why")
    return pid


def stop(cfg: Config, wait: float = 60) -> bool:
    pid = running(cfg)
    if pid is None:
        return False
    terminate(pid, lambda: running(cfg) is None, wait)
    return True


def current(cfg: Config) -> str:
    """What a daemon serving this configuration on the installed code says it serves."""
    assert cfg.path is not None
    return f"{code_stamp()} {cfg.path.resolve()}"


def ensure(cfg: Config, apply: bool) -> list[Change]:
    """setup's step: running on the installed code where wanted, stopped elsewhere."""
    if not wanted(cfg):
        if running(cfg) is None:
            return []
        if apply:
            stop(cfg)
        return [Change("privd", "stopped (privileged.resident is off)")]
    if systemd.is_init():
        changes = ensure_file(cfg.setup.systemd_dir / unit_name(cfg), unit(cfg), 0o644,
                              None, "privd", apply)
        stale = running(cfg) is not None and version(cfg) != current(cfg)
        if apply:
            systemd.activate([unit_name(cfg)], restart=bool(changes) or stale)
        return changes + ([Change("privd", "restarted on the installed code")] if stale else [])
    pid = running(cfg)
    if pid is not None and version(cfg) == current(cfg):
        return []
    what = "started" if pid is None else "restarted on the installed code and configuration"
    if apply:
        if pid is not None:
            stop(cfg)
        start(cfg)
    return [Change("privd", what)]
