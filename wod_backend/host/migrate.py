"""`config init --from-wod /etc/wod.yml DIR`: a configuration from the original backend's
installation files.

The original installer writes `/etc/wod.yml` (WODUSER, WODSENDER), the private
`ansible/generated/<group>` file (the location: WODBEFQDN, WODPOSTPORT, WODAPIDBURL,
WODBASESTDID...) and reads the Ansible `group_vars/all.yml` files (UIDBASE, WODUSERMAX,
BRANDING*, IP-WKSHP-*...), all YAML written by shell heredocs with values unquoted;
the API account lives in the private `scripts/wod-private.sh`. What maps to a key of
ours is mapped and printed; every other non-secret value is carried into `variables`
for the templates that use it.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from wod_backend.errors import ConfigError
from wod_backend.host.shipped import shipped_root

# Never carried into the configuration: secrets, and the original's own machinery.
SECRETS = {"VAULTPWD", "WODBETOKEN", "WODLDAPPWD", "WODAPIDBUSERPWD", "WODAPIDBADMINPWD",
           "WODPGPASSWD", "WODSENDGRIDAPIKEY"}
INTERNAL = {"CLEAN", "NOCHECKSSH", "GIDBASE", "JPHUB", "WODCURLOPT", "WODDISTRIB",
            "WODDISTRIBNAME", "WODGROUP"}


def read_vars(path: Path) -> dict[str, Any]:
    """KEY: value lines as the installer writes them; YAML first, and line by line
    when a value is not valid YAML (a password with ': ' in it)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = yaml.safe_load(text)
        if isinstance(data, dict):
            return {str(k): v for k, v in data.items()}
    except yaml.YAMLError:
        pass
    out: dict[str, Any] = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_-]*):\s?(.*)$", line)
        if m:
            value = m.group(2).strip()
            out[m.group(1)] = value.strip("'\"") if value else None
    return out


def read_shell(path: Path) -> dict[str, str]:
    """`export KEY="value"` lines (the private wod-private.sh)."""
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if m:
            try:
                words = shlex.split(m.group(2))
            except ValueError:
                continue
            out[m.group(1)] = words[0] if words else ""
    return out


@dataclass
class Migration:
    config: dict[str, Any]
    mapped: list[str] = field(default_factory=list)  # "WODUSER -> mail.backend_user: wod"
    notes: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # file name -> content


def _placeholder(value: Any) -> bool:
    """The shipped group_vars' stand-ins (x.y.z.t, xx, TBD) are no values."""
    text = "" if value is None else str(value).strip()
    return text in ("", "TBD", "xx", "yy", "xyzz") or "x.y.z.t" in text


def _names(value: Any) -> list[str]:
    return [n.strip().split(":")[0] for n in str(value or "").split(",") if n.strip()]


def discover(wod_yml: Path) -> tuple[list[Path], Optional[Path], Optional[Path]]:
    """The original's group_vars, generated file and wod-private.sh, from WODUSER's home."""
    user = read_vars(wod_yml).get("WODUSER")
    try:
        home = Path(pwd.getpwnam(str(user)).pw_dir)
    except KeyError:
        return [], None, None
    group_vars = [p for p in (home / "wod-backend/ansible/group_vars/all.yml",
                              home / "wod-private/ansible/group_vars/all.yml") if p.is_file()]
    generated = sorted((home / "wod-private/ansible/generated").glob("*"))
    private = home / "wod-private/scripts/wod-private.sh"
    return (group_vars, generated[0] if generated else None,
            private if private.is_file() else None)


def migrate(wod_yml: Path, group_vars: list[Path], generated: Optional[Path],
            private_sh: Optional[Path], directory: Path) -> Migration:
    values: dict[str, Any] = {}
    for path in [wod_yml, *group_vars, *([generated] if generated else [])]:
        try:
            values.update({k: v for k, v in read_vars(path).items()})
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}")
    private = read_shell(private_sh) if private_sh else {}
    m = Migration(config={})
    used: set[str] = set()

    def take(key: str, dotted: str, value: Any) -> Any:
        used.add(key)
        m.mapped.append(f"{key} -> {dotted}: {value}")
        return value

    config = _location(values, m, take, wod_yml, used)
    m.notes.append("content.public and hooks: point them at your wod-notebooks clone and "
                   "wod-backend tree")
    domains = config["mail"]["domains"]
    api = values.get("WODAPIDBURL")
    if not _placeholder(api):
        username = private.get("WODAPIDBUSER") or "moderator"
        config["frontend"] = {"url": take("WODAPIDBURL", "frontend.url", str(api)),
                              "username": username,
                              "password_file": str(directory / "frontend.pass")}
        if private.get("WODAPIDBUSERPWD"):
            m.secrets["frontend.pass"] = private["WODAPIDBUSERPWD"] + "\n"
            m.mapped.append(f"WODAPIDBUSERPWD -> {directory / 'frontend.pass'} (0600)")
        else:
            m.notes.append(f"provide the frontend's password in {directory / 'frontend.pass'}"
                           f" (0600)")
    proto = values.get("WODBEPROTO") or "http"
    hub_port = values.get("WODBEPORT") or 8000
    if domains:
        url = f"{proto}://{domains[0]}:{hub_port}"
        used |= {"WODBEPROTO", "WODBEPORT"}
        m.mapped.append(f"WODBEPROTO, WODBEFQDN, WODBEPORT -> jupyterhub.url: {url}")
        config["jupyterhub"] = {"url": url, "token_file": str(directory / "hub.token"),
                                "manage": True}
        if proto == "https":
            m.notes.append("jupyterhub.tls_cert/tls_key: name the hub's certificate and key")
    variables, appliances = _carry(values, used, m, take)
    config["variables"] = variables
    config["appliances"] = appliances
    m.mapped.append(f"{len(variables)} other values -> variables (template variables)")
    m.config = config
    return m


def _location(values: dict[str, Any], m: Migration, take: Any, wod_yml: Path,
              used: set[str]) -> dict[str, Any]:
    """The mail intake, the students and the intake policy of the location."""
    user = values.get("WODUSER")
    if _placeholder(user):
        raise ConfigError(f"{wod_yml}: no WODUSER: is it the original's /etc/wod.yml?")
    domains = list(dict.fromkeys(_names(values.get("WODBEFQDN"))
                                 + _names(values.get("WODBEEXTFQDN"))))
    used |= {"WODBEFQDN", "WODBEEXTFQDN"}
    mail: dict[str, Any] = {"backend_user": take("WODUSER", "mail.backend_user", str(user)),
                            "domains": domains, "listen": "all"}
    m.mapped.append(f"WODBEFQDN, WODBEEXTFQDN -> mail.domains: {', '.join(domains)}")
    port = values.get("WODPOSTPORT")
    if not _placeholder(port):
        mail["listen_port"] = take("WODPOSTPORT", "mail.listen_port", int(str(port)))
        mail["smtp_port"] = mail["listen_port"]
    if domains:
        mail["backend_address"] = f"{user}@{domains[0]}"
    students = {"min": int(str(values.get("WODUSERMIN") or 1)),
                "max": int(str(values.get("WODUSERMAX") or 100)),
                "base_id": int(str(values.get("WODBASESTDID") or 0)),
                "uid_base": int(str(values.get("UIDBASE") or 2000)),
                "home_root": "/student"}
    for key, dotted in (("WODUSERMIN", "min"), ("WODUSERMAX", "max"),
                        ("WODBASESTDID", "base_id"), ("UIDBASE", "uid_base")):
        if key in values:
            take(key, f"students.{dotted}", students[dotted])
    intake: dict[str, Any] = {"refused": "discard"}
    sender = values.get("WODSENDER")
    if not _placeholder(sender):
        intake["allowed_senders"] = [take("WODSENDER", "intake.allowed_senders",
                                          str(sender))]
    m.notes.append("intake.allowed_relays: add the frontend's address as postfix sees it")
    return {
        "students": students,
        "content": {"public": str(shipped_root() / "workshops-public")},
        "hooks": {"public": str(shipped_root())},
        "state_dir": "/var/lib/wod-backend", "mail": mail, "intake": intake}


def _carry(values: dict[str, Any], used: set[str], m: Migration, take: Any
           ) -> tuple[dict[str, Any], dict[str, str]]:
    """Appliance addresses (IP-WKSHP-X) to appliances, every other non-secret value to
    the template variables."""
    appliances = {}
    variables = {}
    for key, value in values.items():
        if key in used or key in SECRETS or key in INTERNAL or _placeholder(value):
            continue
        ip = re.fullmatch(r"IP-(WKSHP-[A-Za-z0-9_-]+)", key)
        if ip and _is_address(str(value)):
            appliances[ip.group(1)] = take(key, f"appliances.{ip.group(1)}", str(value))
            continue
        variables[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
    skipped = sorted(k for k in values if k in SECRETS)
    if skipped:
        m.notes.append(f"not carried (secrets): {', '.join(skipped)}")
    return variables, appliances


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}", value))


HEADER = """\
# wod-backend configuration migrated from the original backend's installation
# (wod-backend config init --from-wod). Review it, then as root:
#   wod-backend --config {path} setup --check
"""


def write(m: Migration, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yml"
    if path.exists():
        raise ConfigError(f"{path} exists: not overwritten")
    for name, content in m.secrets.items():
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
    text = HEADER.format(path=path) + yaml.safe_dump(m.config, sort_keys=False,
                                                      default_flow_style=False)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    return path
