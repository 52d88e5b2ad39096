"""The managed hub's jupyterhub_config.py (host/managed_hub.py installs and runs the hub).

What a hub for an event needs, beyond students logging in with their Linux password:
logins that last no longer than the longest workshop, logout that stops the server,
the idle culler as a hub service, the students' servers (and so their kernels) started
inside their own cgroups, JupyterLab opening the workshop's 0-ReadMeFirst notebook,
internal ports of our choosing, TLS when certificates are given, and addresses that
keep failing logins refused for a while (the authenticator's own hook: no daemon, no
log parsing, the same with or without systemd, docs/operations.md).
"""

from __future__ import annotations

from typing import Optional

from wod_backend.config import Config, JupyterHub
from wod_backend.errors import WodError
from wod_backend.system.systemd import is_init as systemd_is_init
from wod_backend.order import user_name

# The backend's token: only the scopes it uses, only on students.
SCOPES = ("list:users!group=students", "read:users!group=students",
          "servers!group=students")

CONFIG = """\
# written by wod-backend setup (jupyterhub.manage: true); changes are overwritten.
c = get_config()  # noqa
import os
import pwd
from urllib.parse import urlsplit
SYSTEMD = {systemd!r}  # systemd is PID 1: servers run as units in the student's slice
if SYSTEMD:
    from systemdspawner import SystemdSpawner as Base
else:
    from jupyterhub.spawner import LocalProcessSpawner as Base
url = urlsplit({url!r})
c.JupyterHub.ip = url.hostname
c.JupyterHub.port = url.port or (443 if url.scheme == "https" else 8000)
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.JupyterHub.db_url = "sqlite:///{data}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{data}/cookie_secret"
c.JupyterHub.pid_file = "{data}/jupyterhub.pid"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = "{data}/proxy.pid"
{tls}
# An event's hub: a login lasts at most the longest workshop, logging out stops the
# server, an idle server is stopped by the culler (its next login starts it again).
c.JupyterHub.shutdown_on_logout = True
c.JupyterHub.cookie_max_age_days = {cookie_days!r}
c.JupyterHub.redirect_to_server = True
# Students log in with their Linux password; their servers run as their Linux users.
from jupyterhub.auth import PAMAuthenticator
from tornado import web
import json
import threading
import time
BANS = {bans!r}
FAILURES, WINDOW, BAN = {failures!r}, {window!r}, {ban!r}  # count, seconds, seconds
NEVER = {{"127.0.0.1", "::1"}}


class WodAuthenticator(PAMAuthenticator):
    \"\"\"Password guessing: FAILURES failed logins from one address within WINDOW seconds
    refuse that address for BAN seconds, while others log in; never 127.0.0.1. The
    client's address is the proxy's X-Forwarded-For (JupyterHub trusts its own
    proxy's). The state is kept in BANS, which wod-backend reads (status, doctor,
    metrics).\"\"\"

    _lock = threading.Lock()

    def _load(self):
        try:
            with open(BANS) as fh:
                state = json.load(fh)
            return state if isinstance(state, dict) else {{}}
        except (OSError, ValueError):
            return {{}}

    def _save(self, state, now):
        state["bans"] = {{ip: t for ip, t in state.get("bans", {{}}).items() if t > now}}
        tmp = BANS + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(state, fh)
        os.chmod(tmp, 0o644)
        os.replace(tmp, BANS)

    async def authenticate(self, handler, data):
        ip, now = handler.request.remote_ip, time.time()
        if FAILURES and ip not in NEVER:
            until = self._load().get("bans", {{}}).get(ip, 0)
            if until > now:
                self.log.warning("login refused: %s banned for %.0f s more", ip, until - now)
                raise web.HTTPError(403, f"too many failed logins from {{ip}}: try again "
                                         f"in {{(until - now) / 60:.0f}} minute(s)")
        user = await super().authenticate(handler, data)
        if not FAILURES or ip in NEVER:
            return user
        with self._lock:
            state = self._load()
            failures = state.setdefault("failures", {{}})
            if user is None:
                recent = [t for t in failures.get(ip, []) if now - t < WINDOW] + [now]
                failures[ip] = recent
                if len(recent) >= FAILURES:
                    state.setdefault("bans", {{}})[ip] = now + BAN
                    failures.pop(ip, None)
                    self.log.warning("login: %s banned for %.0f s after %d failures",
                                     ip, BAN, len(recent))
            elif failures.pop(ip, None) is None:
                return user
            self._save(state, now)
        return user


c.JupyterHub.authenticator_class = WodAuthenticator
c.PAMAuthenticator.open_sessions = False
c.Authenticator.allowed_users = set({students!r})
c.JupyterHub.load_groups = {{"students": {{"users": {students!r}}}}}

CGROUPS = {cgroups!r}  # the students' cgroup v1 groups (students.limits), by controller
HOME_ROOT = {home_root!r}


class WodSpawner(Base):
    \"\"\"The student's server (and so its kernels) inside the student's own limits from
    the start: under systemd a unit in the student's user slice (TLJH's spawner), else
    the local spawner placing it in the student's cgroup v1 groups before it execs.
    JupyterLab opens the workshop's 0-ReadMeFirst notebook.\"\"\"

    def make_preexec_fn(self, name):
        become = super().make_preexec_fn(name)
        uid = pwd.getpwnam(name).pw_uid

        def preexec():
            for controller in CGROUPS:
                path = f"/sys/fs/cgroup/{{controller}}/wod-backend/{{uid}}/cgroup.procs"
                try:
                    with open(path, "w") as fh:
                        fh.write(str(os.getpid()))
                except OSError:
                    pass  # no group made for this student: sweep confines it
            become()
        return preexec

    def start(self):
        if SYSTEMD:  # user-UID.slice carries the students.limits drop-in
            self.slice = f"user-{{pwd.getpwnam(self.user.name).pw_uid}}.slice"
            self.user_workingdir = os.path.join(HOME_ROOT, self.user.name)
        self.default_url = "/lab"
        home = os.path.join(HOME_ROOT, self.user.name)
        try:  # names only: nothing in the student's home is opened or followed
            for entry in sorted(os.scandir(home), key=lambda e: e.name):
                if entry.name.startswith(("WKSHP-", "CHLG-")) and entry.is_dir(
                        follow_symlinks=False):
                    self.default_url = f"/lab/tree/{{entry.name}}/0-ReadMeFirst.ipynb"
                    break
        except OSError:
            pass
        return super().start()


c.JupyterHub.spawner_class = WodSpawner
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": {slow},
                                 "cookie_options": {{"expires_days": {cookie_days!r}}}}}
# The backend: its token, only the scopes it uses, only on students.
with open({token_file!r}) as fh:
    token = fh.read().strip()
c.JupyterHub.services = [{{"name": "wod-backend", "api_token": token}}]
c.JupyterHub.load_roles = [{{"name": "wod-backend", "services": ["wod-backend"],
                            "scopes": {scopes!r}}}]
{culler}
c.JupyterHub.cleanup_servers = False
"""

CULLER = """\
c.JupyterHub.services.append({{"name": "idle-culler", "command": [
    {python!r}, "-m", "jupyterhub_idle_culler", "--timeout={seconds}",
    "--cull-every={every}"]}})
c.JupyterHub.load_roles.append({{"name": "idle-culler", "services": ["idle-culler"],
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]}})
"""


def cookie_days(cfg: Config) -> float:
    """A login lasts as long as the longest workshop in the catalog (hours), in days."""
    from wod_backend.planning.catalog import Catalog

    catalog = Catalog(cfg)
    hours = [4.0]
    for ws in catalog.all():
        try:
            hours.append(float(catalog.meta(ws).duration))
        except WodError:  # a defect workshops check names; the default stands
            continue
    return round(max(hours) / 24, 4)


def render(cfg: Config, hub: JupyterHub, chp: Optional[str]) -> bytes:
    """jupyterhub_config.py for this configuration."""
    from wod_backend.system import limits

    students = [user_name(n) for n in range(cfg.students.min, cfg.students.max + 1)]
    python = str(hub.venv / "bin" / "python")
    culler = "" if not hub.cull_idle_minutes else CULLER.format(
        python=python, seconds=int(hub.cull_idle_minutes * 60),
        every=max(10, min(300, int(hub.cull_idle_minutes * 15))))
    tls = "" if hub.tls_cert is None else (
        f"c.JupyterHub.ssl_cert = {str(hub.tls_cert)!r}\n"
        f"c.JupyterHub.ssl_key = {str(hub.tls_key)!r}")
    cgroups = ([] if systemd_is_init() or not cfg.students.limits.any
               else sorted(limits.v1_controllers()))
    return CONFIG.format(url=hub.url, data=hub.data_dir, chp=chp or
                         "configurable-http-proxy", students=students,
                         singleuser=str(hub.venv / "bin" / "jupyterhub-singleuser"),
                         slow=hub.slow_spawn_timeout, token_file=str(hub.token_file),
                         scopes=list(SCOPES), hub_port=hub.hub_port,
                         proxy_api_port=hub.proxy_api_port, tls=tls,
                         cookie_days=cookie_days(cfg), cgroups=cgroups,
                         home_root=str(cfg.students.home_root), culler=culler,
                         systemd=systemd_is_init(), bans=str(hub.bans_file),
                         failures=hub.login_failures,
                         window=float(hub.login_window_minutes * 60),
                         ban=float(hub.ban_minutes * 60)).encode()
