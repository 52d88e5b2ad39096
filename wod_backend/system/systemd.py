"""systemd, where it is PID 1: whether it is, and the one sequence that makes a unit
file we wrote take effect (daemon-reload, enable, start or restart). Every call is
bounded: a hung systemctl fails `setup` with its name instead of hanging it."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from wod_backend.errors import ConfigError
from wod_backend.system.run import run

TIMEOUT = 90.0


def is_init() -> bool:
    """Whether systemd is PID 1 (not in containers and this test machine)."""
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def _systemctl(*args: str) -> None:
    done = run(["systemctl", *args], timeout=TIMEOUT)
    if not done.ok:
        raise ConfigError(f"systemctl {' '.join(args)}: {done.describe()}: {done.tail(3, 200)}")


def service_unit(description: str, config: Path, args: str, user: Optional[str] = None
                 ) -> bytes:
    """A resident wod-backend service: restarted always; on stop the main process gets
    the TERM and lets the requests it serves finish."""
    import sys

    wod = Path(sys.executable).parent / "wod-backend"
    return (f"[Unit]\nDescription=wod-backend: {description}\nAfter=network.target\n\n"
            f"[Service]\nType=simple\n" + (f"User={user}\n" if user else "") +
            f"Environment=WOD_BACKEND_CONFIG={config}\nExecStart={wod} {args}\n"
            f"Restart=always\nRestartSec=2\nKillMode=mixed\nTimeoutStopSec=600\n\n"
            f"[Install]\nWantedBy=multi-user.target\n").encode()


def activate(units: Iterable[str], restart: bool) -> None:
    """Unit files written: reload systemd, enable the units and start them (restart:
    restart them, for a changed configuration)."""
    names = list(units)
    _systemctl("daemon-reload")
    if names:
        _systemctl("enable", *names)
        _systemctl("restart" if restart else "start", *names)


def reload() -> None:
    _systemctl("daemon-reload")


def is_active(unit: str) -> bool:
    return run(["systemctl", "is-active", "--quiet", unit], timeout=TIMEOUT).ok


def main_pid(unit: str) -> Optional[int]:
    out = run(["systemctl", "show", "-p", "MainPID", "--value", unit], timeout=TIMEOUT)
    value = out.output.strip()
    return int(value) if out.ok and value.isdigit() and int(value) > 0 else None
