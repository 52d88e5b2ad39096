"""The configuration: one YAML file, validated once when it is loaded.

Every section is a frozen dataclass (config/sections.py); `build` walks the YAML against the dataclass
fields, so an unknown key, a wrong type or a missing required value is refused with one
line naming the key (exit 78). Secrets live in files named here, never in the YAML nor
in argv; their modes are checked at load time, their content is read when needed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from wod_backend.errors import ConfigError
from wod_backend.config.schema import build
from wod_backend.config.sections import (DEFAULT_ALPHABET, required, Ansible, Appliance, Backups, Content,
                                  Frontend, Hooks,
                                  Intake, JupyterHub, Kernels, Ldap, Mail, Orders, Passwords,
                                  Privileged, Retention, Schedule, Setup, Students, Sweep)

__all__ = ["DEFAULT_ALPHABET", "Ansible", "Appliance", "Backups", "Config", "Content", "Frontend", "Hooks",
           "Intake", "JupyterHub", "Kernels", "Ldap", "Mail", "Orders", "Passwords", "Privileged", "Retention",
           "Schedule", "Setup", "Students", "Sweep", "check_secret_file", "load", "read_secret"]

DEFAULT_PATH = Path("/etc/wod-backend/config.yml")
ENV_VAR = "WOD_BACKEND_CONFIG"
@dataclass(frozen=True)
class Config:
    content: Content = required()
    students: Students = field(default_factory=Students)
    state_dir: Path = Path("/var/lib/wod-backend")
    frontend: Optional[Frontend] = None
    jupyterhub: Optional[JupyterHub] = None
    ldap: Optional[Ldap] = None
    hooks: Hooks = field(default_factory=Hooks)
    ansible: Ansible = field(default_factory=Ansible)
    passwords: Passwords = field(default_factory=Passwords)
    mail: Mail = field(default_factory=Mail)
    orders: Orders = field(default_factory=Orders)
    privileged: Privileged = field(default_factory=Privileged)
    intake: Intake = field(default_factory=Intake)
    schedule: Schedule = field(default_factory=Schedule)
    sweep: Sweep = field(default_factory=Sweep)
    backups: Backups = field(default_factory=Backups)
    journal: Retention = field(default_factory=Retention)
    setup: Setup = field(default_factory=Setup)
    # Operator template variables (BRANDING, SURVEYURL, IP-WKSHP-X...).
    variables: dict = field(default_factory=dict)
    # Each appliance workshop's appliance, by folder name: {WKSHP-X: Appliance} once
    # loaded (the YAML may give the host alone).
    appliances: dict = field(default_factory=dict)
    # What `inventory_hostname` renders as in templates (the reference's inventory host).
    inventory_hostname: str = "127.0.0.1"
    path: Optional[Path] = None

    def student_in_range(self, n: int) -> bool:
        return self.students.min <= n <= self.students.max

    @property
    def known_hosts(self) -> Path:
        """The appliances' recorded host keys (root's file, beside the configuration)."""
        if self.setup.known_hosts is not None:
            return self.setup.known_hosts
        base = self.path.resolve().parent if self.path is not None else DEFAULT_PATH.parent
        return base / "known_hosts"


_SECRET_FIELDS = {"password_file", "token_file", "secret_file", "vault_password_file"}


def check_secret_file(key: str, path: Path, owners: frozenset[int] = frozenset()) -> None:
    """Refuse a secret file that others could read or replace (as ssh does for keys).
    It must belong to root, to the user running wod-backend, or to one of `owners`."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"config key {key}: cannot read secret file {path}: {exc.strerror}")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"config key {key}: secret file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"config key {key}: secret file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    if st.st_uid not in {0, os.geteuid(), *owners}:
        raise ConfigError(f"config key {key}: secret file {path} must be owned by root, "
                          f"the backend user or the user running wod-backend")


def read_secret(path: Path) -> str:
    """The first line of a secret file (checked at load time)."""
    try:
        return path.read_text(encoding="utf-8").strip("\r\n")
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}")


def _validate(cfg: Config) -> None:
    s = cfg.students
    if not (0 <= s.min <= s.max <= 99999):
        raise ConfigError("config key students.min/max: need 0 <= min <= max <= 99999")
    if s.uid_base < 1000:
        raise ConfigError("config key students.uid_base: must be at least 1000 "
                          "(system accounts live below)")
    if not s.home_root.is_absolute():
        raise ConfigError("config key students.home_root: must be an absolute path")
    if cfg.passwords.length < 8 or len(set(cfg.passwords.alphabet)) < 10:
        raise ConfigError("config key passwords: need length >= 8 and 10+ distinct characters")
    if not all(c.isascii() and c.isprintable() and c not in ": " for c in cfg.passwords.alphabet):
        raise ConfigError("config key passwords.alphabet: printable ASCII only, no space or "
                          "colon (chpasswd reads user:password lines)")
    if not cfg.content.public.is_dir():
        raise ConfigError(f"config key content.public: {cfg.content.public} is not a directory")
    if cfg.content.private is not None and not cfg.content.private.is_dir():
        raise ConfigError(f"config key content.private: {cfg.content.private} "
                          f"is not a directory")
    if cfg.privileged.mode not in ("auto", "direct", "sudo"):
        raise ConfigError("config key privileged.mode: expected auto, direct or sudo")
    for key, value in cfg.variables.items():
        if not isinstance(value, (str, int, float, bool, list, dict)) and value is not None:
            raise ConfigError(f"config key variables.{key}: unsupported value type")
    _validate_mail(cfg)


def _appliances(raw: dict) -> dict[str, Appliance]:
    """`appliances` as values: a string is the host (today's form), a mapping gives the
    port, account, key and timeout too."""
    out = {}
    for folder, value in raw.items():
        key = f"appliances.{folder}"
        if isinstance(value, Appliance):
            out[folder] = value
            continue
        if isinstance(value, str):
            value = {"host": value}
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key}: expected an IPv4 address or a mapping "
                              f"(host, port, account, key, timeout, manage)")
        app = build(Appliance, value, key + ".")
        if not 0 < app.port < 65536:
            raise ConfigError(f"config key {key}.port: expected 1..65535")
        if not 0 < app.timeout <= 600:
            raise ConfigError(f"config key {key}.timeout: expected 0 < seconds <= 600")
        if app.account and not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", app.account):
            raise ConfigError(f"config key {key}.account: not a user name")
        if app.key is not None and not app.key.is_absolute():
            raise ConfigError(f"config key {key}.key: must be an absolute path")
        out[folder] = app
    return out


def _validate_mail(cfg: Config) -> None:
    if cfg.schedule.report is not None and not re.fullmatch(
            r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+", cfg.schedule.report):
        raise ConfigError("config key schedule.report: expected one mail address")
    if not 0 <= cfg.schedule.report_hour <= 23:
        raise ConfigError("config key schedule.report_hour: expected 0..23")
    if cfg.students.limits.disk_mb is not None and cfg.students.limits.disk_mb < 1:
        raise ConfigError("config key students.limits.disk_mb: must be at least 1")
    for entry in cfg.schedule.resets:
        fields = entry.split()
        if len(fields) != 7 or not all(re.fullmatch(r"[0-9*/,-]+", f) for f in fields[:5]) \
                or not re.fullmatch(r"WKSHP-[A-Za-z0-9_-]+", fields[5]) \
                or not re.fullmatch(r"[0-9]+(-[0-9]+)?", fields[6]):
            raise ConfigError(f"config key schedule.resets: {entry!r:.60} is not "
                              f"'MIN HOUR DOM MON DOW WKSHP-X N-M'")
    m = cfg.mail
    if m.listen_port is not None and not (1 <= m.listen_port <= 65535 and m.listen_port != 25):
        raise ConfigError("config key mail.listen_port: a TCP port other than 25 (25 is "
                          "always served)")
    for name in m.domains:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", name):
            raise ConfigError(f"config key mail.domains: {name!r:.60} is not a host name")
    hub = cfg.jupyterhub
    if hub is not None:
        ports = {hub.hub_port, hub.proxy_api_port}
        if len(ports) != 2 or not all(1 <= p <= 65535 for p in ports):
            raise ConfigError("config key jupyterhub.hub_port/proxy_api_port: two distinct "
                              "TCP ports")
        if (hub.tls_cert is None) != (hub.tls_key is None):
            raise ConfigError("config key jupyterhub.tls_cert/tls_key: give both or neither")
        if hub.tls_cert is not None and not hub.url.startswith("https://"):
            raise ConfigError("config key jupyterhub.url: https:// with tls_cert set")
        if hub.cull_idle_minutes < 0:
            raise ConfigError("config key jupyterhub.cull_idle_minutes: 0 (never) or more")
    if cfg.mail.concurrency < 1:
        raise ConfigError("config key mail.concurrency: must be at least 1")
    if cfg.intake.refused not in ("discard", "bounce"):
        raise ConfigError("config key intake.refused: expected discard or bounce")
    if cfg.intake.max_range < 1 or cfg.intake.window <= 0:
        raise ConfigError("config key intake: max_range and window must be positive")


def secret_fields(cfg: Config) -> list[tuple[str, Path]]:
    """(config key, path) of every secret file the configuration names."""
    out = []
    for section in ("frontend", "jupyterhub", "ldap", "intake", "hooks"):
        sub = getattr(cfg, section)
        if sub is None:
            continue
        for f in dataclasses.fields(sub):
            if f.name in _SECRET_FIELDS and getattr(sub, f.name) is not None:
                out.append((f"{section}.{f.name}", getattr(sub, f.name)))
    return out


def _validate_host(cfg: Config) -> None:
    """What must already be true on this host: the backend user, the secret files."""
    owners: frozenset[int] = frozenset()
    if cfg.mail.backend_user:
        import pwd

        try:
            owners = frozenset({pwd.getpwnam(cfg.mail.backend_user).pw_uid})
        except KeyError:
            raise ConfigError(f"config key mail.backend_user: no user "
                              f"{cfg.mail.backend_user}")
    for key, path in secret_fields(cfg):
        check_secret_file(key, path, owners)


def resolve_path(explicit: Optional[str]) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_PATH


def load(explicit: Optional[str] = None, host: bool = True) -> Config:
    """Load and validate the configuration, or raise ConfigError with one line.
    host=False (`setup`, which makes them) skips what must exist on the host: the
    backend user and the secret files."""
    path = resolve_path(explicit)
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}")
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"configuration {path}{where}: not valid YAML")
    if not isinstance(data, dict):
        raise ConfigError(f"configuration {path}: expected a mapping at the top level")
    cfg = build(Config, data)
    cfg = dataclasses.replace(cfg, path=path, appliances=_appliances(cfg.appliances))
    _validate(cfg)
    if host:
        _validate_host(cfg)
    return cfg
