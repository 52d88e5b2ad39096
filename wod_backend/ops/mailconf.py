"""postfix for a backend host, and the scheduled work (cron or systemd timers).

postfix delivers to the backend user through procmail, a few orders at once, listens
on `mail.listen`, and takes mail for the backend user only from the intake policy's
relays (a restriction class: everyone else gets a 5xx at RCPT, the mail is never
queued). Settings are compared with `postconf` before they are written.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

from wod_backend.config import Config
from wod_backend.errors import ConfigError
from wod_backend.ops.hostconf import Change, Owner, bin_dir, ensure_file

CLASS = "wod_backend_only"


def postfix_settings(cfg: Config) -> dict[str, str]:
    d = cfg.setup.postfix_dir
    return {
        "mailbox_command": '/usr/bin/procmail -a "$EXTENSION"',
        "local_destination_concurrency_limit": str(cfg.mail.concurrency),
        "inet_interfaces": cfg.mail.listen,
        "smtpd_restriction_classes": CLASS,
        CLASS: f"check_client_access cidr:{d}/wod-backend-clients, reject",
        "smtpd_recipient_restrictions": (f"check_recipient_access texthash:{d}/wod-backend-"
                                         f"recipients, permit_mynetworks, "
                                         f"reject_unauth_destination"),
    }


def client_map(cfg: Config) -> bytes:
    """The intake policy's relays, as a cidr map; no list means anyone may send."""
    nets = []
    for relay in cfg.intake.allowed_relays:
        if relay == "local":
            continue  # local submission does not go through smtpd
        try:
            nets.append(str(ipaddress.ip_network(relay, strict=False)))
        except ValueError:
            raise ConfigError(f"config key intake.allowed_relays: {relay!r} is not an "
                              f"address or network")
    if not cfg.intake.allowed_relays:
        nets = ["0.0.0.0/0"]
    lines = [f"{net}\tOK" for net in nets]
    return ("# written by wod-backend setup: who may mail the backend user\n"
            + "\n".join(lines) + "\n").encode()


def recipient_map(cfg: Config) -> bytes:
    return (f"# written by wod-backend setup\n{cfg.mail.backend_user}@\t{CLASS}\n").encode()


def postconf(cfg: Config, *args: str) -> str:
    p = subprocess.run(["postconf", "-c", str(cfg.setup.postfix_dir), *args],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise ConfigError(f"postconf {' '.join(args)[:60]}: {p.stderr.strip()[:200]}")
    return p.stdout


def ensure_postfix(cfg: Config, apply: bool) -> list[Change]:
    d = cfg.setup.postfix_dir
    changes = ensure_file(d / "wod-backend-clients", client_map(cfg), 0o644, None,
                          "postfix", apply)
    changes += ensure_file(d / "wod-backend-recipients", recipient_map(cfg), 0o644, None,
                           "postfix", apply)
    current = explicit_settings(cfg)
    for key, value in postfix_settings(cfg).items():
        if current.get(key) != value:
            changes.append(Change("postfix", f"{key} = {value}"))
            if apply:
                postconf(cfg, "-e", f"{key}={value}")
    if changes and apply:
        check = subprocess.run(["postfix", "-c", str(d), "check"], capture_output=True,
                               text=True)
        if check.returncode != 0:
            raise ConfigError(f"postfix check: {check.stderr.strip()[:200]}")
        running = subprocess.run(["postfix", "-c", str(d), "status"],
                                 capture_output=True).returncode == 0
        subprocess.run(["postfix", "-c", str(d), "reload" if running else "start"],
                       check=True, capture_output=True)
    return changes


def explicit_settings(cfg: Config) -> dict[str, str]:
    """main.cf's explicit settings (`postconf -n`), name -> value."""
    out = {}
    for line in postconf(cfg, "-n").splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def systemd_is_init() -> bool:
    try:
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def cron_file(cfg: Config) -> bytes:
    assert cfg.path is not None
    wod = bin_dir() / "wod-backend"
    user = cfg.mail.backend_user
    lines = ["# written by wod-backend setup: the scheduled work of this backend.",
             "# Runs as the backend user; root steps go through the sudo helper.",
             f"WOD_BACKEND_CONFIG={cfg.path.resolve()}"]
    if cfg.schedule.flush:
        lines.append(f"* * * * *  {user}  {wod} outbox flush >/dev/null")
    if cfg.mail.worker:  # where systemd does not run it (ops/worker.py)
        lines.append(f"@reboot  {user}  {wod} worker start >/dev/null")
    if cfg.schedule.metrics_dir is not None:
        lines.append(f"* * * * *  {user}  {wod} metrics --textfile "
                     f"{cfg.schedule.metrics_dir}")
    if cfg.backups.dir is not None:  # root's: backups.dir is
        lines.append(f"17 * * * *  root  {wod} backups prune >/dev/null")
    if cfg.schedule.sweep:
        lines.append(f"* * * * *  {user}  {wod} sweep >/dev/null")
        if cfg.students.expiry_grace is not None:
            lines.append(f"* * * * *  {user}  {wod} expire >/dev/null")
    for entry in cfg.schedule.resets:
        fields = entry.split()
        lines.append(f"{' '.join(fields[:5])}  {user}  {wod} reset {fields[5]} {fields[6]} "
                     f"--customer 0")
    return ("\n".join(lines) + "\n").encode()


def systemd_units(cfg: Config) -> dict[str, bytes]:
    """Unit files: the outbox flush and the sweep (then expire) every minute, each batch
    reset at its time."""
    assert cfg.path is not None
    wod, user, config = bin_dir() / "wod-backend", cfg.mail.backend_user, cfg.path.resolve()
    units: dict[str, str] = {}

    def service(name: str, what: str, args: str, ok: str = "") -> None:
        units[f"{name}.service"] = (
            f"[Unit]\nDescription=wod-backend: {what}\n\n[Service]\nType=oneshot\n"
            f"User={user}\nEnvironment=WOD_BACKEND_CONFIG={config}\n"
            f"ExecStart={wod} {args}\n" + (f"SuccessExitStatus={ok}\n" if ok else ""))

    def timer(name: str, what: str, when: str) -> None:
        units[f"{name}.timer"] = (f"[Unit]\nDescription=wod-backend: {what}\n\n[Timer]\n"
                                  f"{when}\n\n[Install]\nWantedBy=timers.target\n")

    if cfg.schedule.flush:
        service("wod-backend-outbox", "send queued reports", "outbox flush", "75")
        timer("wod-backend-outbox", "flush the outbox every minute",
              "OnBootSec=1min\nOnUnitActiveSec=1min")
    if cfg.schedule.metrics_dir is not None:
        service("wod-backend-metrics", "metrics for the textfile collector",
                f"metrics --textfile {cfg.schedule.metrics_dir}")
        timer("wod-backend-metrics", "metrics every minute",
              "OnBootSec=1min\nOnUnitActiveSec=1min")
    if cfg.backups.dir is not None:
        service("wod-backend-backups", "remove backups past backups.keep_days",
                "backups prune")
        units["wod-backend-backups.service"] = units["wod-backend-backups.service"].replace(
            f"User={user}\n", "User=root\n")
        timer("wod-backend-backups", "prune backups hourly", "OnCalendar=hourly")
    if cfg.schedule.sweep:
        service("wod-backend-sweep", "end students' abuse, expire overdue workshops",
                "sweep", "75")
        if cfg.students.expiry_grace is not None:
            units["wod-backend-sweep.service"] += f"ExecStartPost={wod} expire\n"
        timer("wod-backend-sweep", "sweep every minute",
              "OnBootSec=1min\nOnUnitActiveSec=1min")
    for i, entry in enumerate(cfg.schedule.resets):
        f = entry.split()
        name = f"wod-backend-reset-{i}"
        service(name, f"reset {f[5]} {f[6]}", f"reset {f[5]} {f[6]} --customer 0")
        timer(name, f"reset {f[5]} {f[6]}", f"OnCalendar={_calendar(f[:5])}")
    return {k: v.encode() for k, v in units.items()}


def _calendar(cron: list[str]) -> str:
    """A cron time ("30 3 * * *") as an OnCalendar expression ("*-*-* 03:30:00")."""
    minute, hour, dom, month, dow = cron
    days = "" if dow == "*" else f"{dow} "
    return f"{days}*-{month}-{dom} {hour}:{minute}:00".replace("*/", "0/")


def ensure_schedule(cfg: Config, apply: bool) -> list[Change]:
    if not systemd_is_init():
        owner: Owner = None
        return ensure_file(cfg.setup.cron_file, cron_file(cfg), 0o644, owner, "schedule",
                           apply)
    changes: list[Change] = []
    for name, content in systemd_units(cfg).items():
        changes += ensure_file(cfg.setup.systemd_dir / name, content, 0o644, None,
                               "schedule", apply)
    if changes and apply:
        subprocess.run(["systemctl", "daemon-reload"], check=True, capture_output=True)
        timers = [n for n in systemd_units(cfg) if n.endswith(".timer")]
        subprocess.run(["systemctl", "enable", "--now", *timers], check=True,
                       capture_output=True)
    return changes
