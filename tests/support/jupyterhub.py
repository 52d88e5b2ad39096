"""A real JupyterHub for tests: configurable-http-proxy from npm, a service token with
admin scopes on users and servers, and a single-user server of the test's choice:
`mocksu` (JupyterHub's light stand-in) or the real `jupyterhub-singleuser`."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from support.slapd import free_port

CONFIG = """\
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "{spawner}"
c.Spawner.cmd = {cmd!r}
c.Spawner.args = {args!r}
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.JupyterHub.services = [{{"name": "wod-backend", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "wod-backend", "services": ["wod-backend"],
    "scopes": ["admin:users", "admin:servers", "list:users", "read:users"]}}]
c.JupyterHub.cleanup_servers = True
{extra}
"""


@dataclass
class RunningHub:
    url: str
    token: str
    proc: subprocess.Popen
    log: Path

    def api(self, method: str, path: str) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api/{path}", timeout=30,
                                headers={"Authorization": f"token {self.token}"})

    def server(self, user: str) -> dict | None:
        resp = self.api("GET", f"users/{user}")
        if resp.status_code == 404:
            return None
        return (resp.json().get("servers") or {}).get("")

    def wait_server(self, user: str, ready: bool = True, bound: float = 60) -> bool:
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            srv = self.server(user)
            if (bool(srv and srv.get("ready")) if ready else srv is None):
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(workdir: Path, real_singleuser: bool = False, extra: str = "") -> RunningHub:
    chp = shutil.which("configurable-http-proxy")
    if chp is None:
        raise RuntimeError("configurable-http-proxy is not installed (npm)")
    workdir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(24)
    port = free_port()
    bindir = Path(sys.executable).parent
    if real_singleuser:
        # The real server, as root here: spawned as the system user by LocalProcessSpawner.
        spawner, cmd, args = "default", [str(bindir / "jupyterhub-singleuser")], []
    else:
        spawner = "simple"
        cmd, args = [sys.executable, "-m", "jupyterhub.tests.mocksu"], []
    conf = workdir / "jupyterhub_config.py"
    conf.write_text(CONFIG.format(port=port, hub_port=free_port(),
                                  proxy_api_port=free_port(), chp=chp, dir=workdir,
                                  spawner=spawner, cmd=cmd, args=args, token=token,
                                  extra=extra))
    log = workdir / "jupyterhub.log"
    proc = subprocess.Popen([str(bindir / "jupyterhub"), "-f", str(conf)], cwd=workdir,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    hub = RunningHub(f"http://127.0.0.1:{port}", token, proc, log)
    deadline = time.monotonic() + 90
    while True:
        try:
            if hub.api("GET", "").status_code == 200:
                return hub
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            hub.stop()
            raise RuntimeError(f"JupyterHub did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
