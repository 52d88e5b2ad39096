"""A managed JupyterHub (`jupyterhub.manage: true`): installed, configured and run by us.

`setup` installs JupyterHub in its own venv at the versions pinned here, writes its
`jupyterhub_config.py` and the backend's token, and runs it: a systemd service where
systemd is PID 1, else `wod-backend hub run|stop|status`, which keeps a pid file and a
log in `jupyterhub.data_dir`. Students log in with their Linux password (PAM) and their
servers run as their own Linux users (the hub runs as root: its local-process spawner
switches to the user). The backend's service token has only the scopes the backend
uses, filtered to the `students` group: it can read those users and start and stop
their servers, nothing else (not create a user, not touch an admin).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from wod_backend.config import Config, JupyterHub
from wod_backend.errors import ConfigError
from wod_backend.host.hostconf import Change, backend_user, ensure_dir, ensure_file
from wod_backend.system import systemd
from wod_backend.remote.http import HttpError, Session
from wod_backend.host import hubconfig
from wod_backend.ops import kernels
from wod_backend.remote.hub import hub_api
from wod_backend.system.run import STDOUT, run
from wod_backend.system.run import start as start_process

# The hub's own packages, pinned in one place (the single-user servers use the same venv;
# the kernels' in ops/kernels.py).
PACKAGES = ("jupyterhub==6.1.1", "jupyter_server==2.21.1", "jupyterlab==4.5.1",
            "pamela==1.2.0", "jupyterhub-idle-culler==2.0.0",
            "jupyterhub-systemdspawner==1.0.2")  # TLJH's: servers in the user's slice
UNIT = "wod-backend-hub.service"
# JupyterLab for students: no "receive official Jupyter news?" prompt, no update check.
OVERRIDES = {"@jupyterlab/apputils-extension:notification": {"checkForUpdates": False,
                                                            "fetchNews": "false"}}

def hub_section(cfg: Config) -> JupyterHub:
    if cfg.jupyterhub is None or not cfg.jupyterhub.manage:
        raise ConfigError("config key jupyterhub.manage: this hub is not managed here")
    return cfg.jupyterhub


def config_file(cfg: Config) -> Path:
    return hub_section(cfg).data_dir / "jupyterhub_config.py"


def chp_path() -> Optional[str]:
    return shutil.which("configurable-http-proxy")


def wanted_packages(cfg: Config) -> list[str]:
    return [*PACKAGES, *kernels.packages(hub_section(cfg).kernels)]


def installed(cfg: Config) -> bool:
    """Whether the hub's venv holds exactly the pinned packages and kernels."""
    marker = hub_section(cfg).venv / "wod-backend-packages.txt"
    try:
        return marker.read_text().split() == wanted_packages(cfg)
    except OSError:
        return False


def install(cfg: Config) -> None:
    hub = hub_section(cfg)
    python = hub.venv / "bin" / "python"
    if not python.exists():
        made = run(["/usr/bin/python3", "-m", "venv", str(hub.venv)], timeout=300)
        if not made.ok:
            raise ConfigError(f"making the hub's venv failed: {made.tail(3, 300)}")
    pip = run([str(hub.venv / "bin" / "pip"), "install", "-q", *wanted_packages(cfg)],
              timeout=1800)
    if not pip.ok:
        raise ConfigError(f"installing JupyterHub failed: {pip.tail(3, 300)}")
    for module in kernels.install_modules(hub.kernels):  # registers bash, ssh
        done = run([str(python), "-m", *module.split()], timeout=300)
        if not done.ok:
            raise ConfigError(f"registering the kernel of {module} failed: "
                              f"{done.tail(3, 300)}")
    (hub.venv / "wod-backend-packages.txt").write_text("\n".join(wanted_packages(cfg)) + "\n")


def ensure_kernels_and_lab(cfg: Config, apply: bool) -> list[Change]:
    """The configured kernelspec directories in the hub, and JupyterLab's overrides."""
    hub = hub_section(cfg)
    changes: list[Change] = []
    for name, src in kernels.spec_dirs(hub.kernels).items():
        if not kernels.same_spec(src, hub.venv):
            changes.append(Change("jupyterhub", f"kernel {name} from {src}"))
            if apply:
                kernels.copy_spec(src, hub.venv)
    overrides = hub.venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    changes += ensure_file(overrides, (json.dumps(OVERRIDES, indent=1) + "\n").encode(),
                           0o644, None, "jupyterhub", apply)
    return changes


def ports_free(cfg: Config) -> None:
    """The hub's ports must be free before it starts: another JupyterHub on this host
    (TLJH, another event) holds 8081 and 8001 by default."""
    hub = hub_section(cfg)
    url = urlsplit(hub.url)
    public = url.port or (443 if url.scheme == "https" else 8000)
    for key, host, port in (("jupyterhub.hub_port", "127.0.0.1", hub.hub_port),
                            ("jupyterhub.proxy_api_port", "127.0.0.1", hub.proxy_api_port),
                            ("jupyterhub.url", url.hostname or "127.0.0.1", public)):
        with socket.socket() as probe:
            probe.settimeout(2)
            try:
                taken = probe.connect_ex((host, port)) == 0
            except OSError:  # a name this host cannot resolve: nothing listens here
                taken = False
            if taken:
                raise ConfigError(f"config key {key}: port {port} on {host} is already in "
                                  f"use (another JupyterHub?): choose a free port")


def pid(cfg: Config) -> Optional[int]:
    """The running hub's pid (systemd's, or our pid file's), or None."""
    if systemd.is_init():
        return systemd.main_pid(UNIT)
    path = hub_section(cfg).data_dir / "wod-backend-hub.pid"
    try:
        value = int(path.read_text().strip())
        os.kill(value, 0)
    except (OSError, ValueError):
        return None
    return value


def start(cfg: Config) -> int:
    """Start the hub in the background (its own session, output to its log)."""
    hub = hub_section(cfg)
    running = pid(cfg)
    if running is not None:
        return running
    log = open(hub.data_dir / "jupyterhub.log", "ab")
    proc = start_process([str(hub.venv / "bin" / "jupyterhub"), "-f", str(config_file(cfg))],
                         cwd=str(hub.data_dir), stdout=log, stderr=STDOUT)
    (hub.data_dir / "wod-backend-hub.pid").write_text(f"{proc.pid}\n")
    return proc.pid


def stop(cfg: Config, wait: float = 30) -> bool:
    """Stop the hub (and its proxy, in its process group); whether one was running."""
    running = pid(cfg)
    if running is None:
        return False
    os.killpg(running, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(running, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(running, signal.SIGKILL)
    (hub_section(cfg).data_dir / "wod-backend-hub.pid").unlink(missing_ok=True)
    return True


def answers(cfg: Config, bound: float) -> bool:
    """Whether the hub's API answers within `bound` seconds."""
    session = Session(hub_api(hub_section(cfg)), 5)
    deadline = time.monotonic() + bound
    while True:
        try:
            if session.request("GET", "").status_code == 200:
                return True
        except HttpError:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.3)


def systemd_unit(cfg: Config) -> bytes:
    hub = hub_section(cfg)
    return (f"[Unit]\nDescription=wod-backend: the students' JupyterHub\n"
            f"After=network.target\n\n[Service]\nType=simple\n"
            f"WorkingDirectory={hub.data_dir}\n"
            f"ExecStart={hub.venv / 'bin' / 'jupyterhub'} -f {config_file(cfg)}\n"
            f"Restart=on-failure\nKillMode=mixed\n\n[Install]\n"
            f"WantedBy=multi-user.target\n").encode()


def _systemd(cfg: Config, apply: bool, reconfigured: bool) -> list[Change]:
    """Where systemd is PID 1, it runs the hub: the unit, enabled, (re)started."""
    changes = ensure_file(cfg.setup.systemd_dir / UNIT, systemd_unit(cfg), 0o644, None,
                          "jupyterhub", apply)
    active = systemd.is_active(UNIT)
    if changes or reconfigured or not active:
        changes.append(Change("jupyterhub", f"systemd service {UNIT} (re)started"))
        if apply:
            systemd.activate([UNIT], restart=True)
    return changes


def ensure_hub(cfg: Config, apply: bool) -> list[Change]:
    """The managed hub installed at the pinned versions, configured, and running."""
    if cfg.jupyterhub is None or not cfg.jupyterhub.manage:
        return []
    hub = cfg.jupyterhub
    changes: list[Change] = []
    if chp_path() is None:
        changes.append(Change("jupyterhub", "configurable-http-proxy (npm install -g)"))
        if apply:
            done = run(["npm", "install", "-g", "--silent", "configurable-http-proxy"],
                       timeout=600)
            if not done.ok:
                raise ConfigError(f"npm install configurable-http-proxy: {done.tail(3, 200)}")
    changes += ensure_dir(hub.data_dir, 0o700, None, "jupyterhub", apply)
    changes += ensure_dir(hub.bans_file.parent, 0o755, None, "jupyterhub", apply)
    if not installed(cfg):
        changes.append(Change("jupyterhub", f"install {' '.join(PACKAGES)} in {hub.venv}"))
        if apply:
            install(cfg)
    if not hub.token_file.exists():
        pw = backend_user(cfg)
        owner = (pw.pw_uid, pw.pw_gid) if pw is not None else None
        changes += ensure_file(hub.token_file, (os.urandom(32).hex() + "\n").encode(),
                               0o600, owner, "jupyterhub token (generated)", apply)
    changes += ensure_kernels_and_lab(cfg, apply)
    reconfigured = ensure_file(config_file(cfg), hubconfig.render(cfg, hub_section(cfg), chp_path()), 0o600, None,
                               "jupyterhub", apply)
    changes += reconfigured
    if systemd.is_init():
        return changes + _systemd(cfg, apply, bool(reconfigured))
    if reconfigured and pid(cfg) is not None:
        changes.append(Change("jupyterhub", "restarted with its new configuration"))
        if apply:
            stop(cfg)
    if pid(cfg) is None:
        ports_free(cfg)
        changes.append(Change("jupyterhub", f"started at {hub.url}"))
        if apply:
            start(cfg)
            if not answers(cfg, 90):
                raise ConfigError(f"jupyterhub did not answer at {hub.url}: see "
                                  f"{hub.data_dir}/jupyterhub.log")
    return changes
