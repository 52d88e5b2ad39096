"""postfix for a backend host, and the scheduled work (cron or systemd timers).

postfix delivers to the backend user through procmail, a few orders at once, listens
on `mail.listen`, and takes mail for the backend user only from the intake policy's
relays (a restriction class: everyone else gets a 5xx at RCPT, the mail is never
queued). Settings are compared with `postconf` before they are written.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError
from wod_backend.host import firewall, privd
from wod_backend.host.hostconf import Change, Owner, bin_dir, ensure_file
from wod_backend.system import systemd
from wod_backend.system.run import run

def _slug(cfg: Config) -> str:
    """This configuration's name in postfix (map files, restriction class): two backends
    on one host (two backend users) never write or remove each other's."""
    return re.sub(r"[^A-Za-z0-9_]", "_", cfg.mail.backend_user)


def restriction_class(cfg: Config) -> str:
    return f"wod_backend_only_{_slug(cfg)}"


def clients_file(cfg: Config) -> Path:
    return cfg.setup.postfix_dir / f"wod-backend-clients-{_slug(cfg)}"


def recipients_file(cfg: Config) -> Path:
    return cfg.setup.postfix_dir / f"wod-backend-recipients-{_slug(cfg)}"


PROBE = "probe"  # the address extension of doctor's probe mail (user+probe@domain)
TAIL = ["permit_mynetworks", "reject_unauth_destination"]


def _items(value: str) -> list[str]:
    """A postfix list value's items (comma or space separated; `a b` pairs kept)."""
    return [i.strip() for i in value.split(",") if i.strip()]


def _recipient_restrictions(cfg: Config, current: str) -> str:
    """Every backend's recipient check on this host (theirs kept if their map exists),
    ours among them, then postfix's usual relay rules."""
    ours = f"check_recipient_access texthash:{recipients_file(cfg)}"
    prefix = f"check_recipient_access texthash:{cfg.setup.postfix_dir}/wod-backend-recipients-"
    keep = [i for i in _items(current) if i.startswith(prefix) and i != ours
            and Path(i.split(":", 1)[1]).exists()]
    return ", ".join(sorted(keep + [ours]) + TAIL)


def _classes(cfg: Config, current: str) -> str:
    keep = [c for c in current.replace(",", " ").split()
            if c.startswith("wod_backend_only_") and c != restriction_class(cfg)]
    return " ".join(sorted(keep + [restriction_class(cfg)]))


def _destinations(cfg: Config, current: str) -> str:
    """mydestination with the location's names added (the operator's own entries kept)."""
    have = _items(current)
    return ", ".join(have + [d for d in cfg.mail.domains if d not in have])


def _submitters(cfg: Config, current: str) -> str:
    """authorized_submit_users: root and every backend user; students cannot `sendmail`.
    Postfix's default (static:anyone) is replaced; names already listed are kept."""
    names = [i for i in _items(current) if ":" not in i and not i.startswith("!")]
    return ", ".join(dict.fromkeys(["root", *names, cfg.mail.backend_user]))


def postfix_settings(cfg: Config, current: dict[str, str]) -> dict[str, str]:
    """main.cf keys as this configuration wants them, merged with what other backends on
    this host set (`current`: postconf's values, defaults included)."""
    settings = {
        "mailbox_command": '/usr/bin/procmail -a "$EXTENSION"',
        "recipient_delimiter": "+",
        "local_destination_concurrency_limit": str(cfg.mail.concurrency),
        "inet_interfaces": cfg.mail.listen,
        "smtpd_restriction_classes": _classes(cfg, current.get("smtpd_restriction_classes", "")),
        restriction_class(cfg): f"check_client_access cidr:{clients_file(cfg)}, reject",
        "smtpd_recipient_restrictions": _recipient_restrictions(
            cfg, current.get("smtpd_recipient_restrictions", "")),
    }
    if cfg.mail.domains:
        settings["mydestination"] = _destinations(cfg, current.get("mydestination", ""))
    if cfg.mail.students_cannot_mail:
        settings["authorized_submit_users"] = _submitters(
            cfg, current.get("authorized_submit_users", ""))
    if cfg.mail.relayhost:
        # Debian's "Local only" postfix sends nothing out: mail to other hosts (the
        # operator's report) goes through the relay.
        settings["relayhost"] = cfg.mail.relayhost
        if current.get("default_transport") == "error":
            settings["default_transport"] = "smtp"
        if current.get("relay_transport") == "error":
            settings["relay_transport"] = "relay"
    return settings


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
    """Orders (user@any of our names) only from the relays; doctor's probe (user+probe@)
    from anyone: it is journaled as a probe and changes nothing (intake/pipeline.py)."""
    user = cfg.mail.backend_user
    return (f"# written by wod-backend setup\n{user}+{PROBE}@\tOK\n"
            f"{user}@\t{restriction_class(cfg)}\n").encode()


def master_line(cfg: Config) -> Optional[str]:
    """master.cf's extra smtpd service for the frontend (chrooted like Debian's port 25)."""
    port = cfg.mail.listen_port
    return None if port is None else f"{port} inet n - y - - smtpd"


def postconf(cfg: Config, *args: str) -> str:
    p = run(["postconf", "-c", str(cfg.setup.postfix_dir), *args], timeout=60)
    if not p.ok:
        raise ConfigError(f"postconf {' '.join(args)[:60]}: {p.tail(3, 200)}")
    return p.output


def _values(cfg: Config) -> dict[str, str]:
    """main.cf's values (defaults included), name -> value."""
    out = {}
    for line in postconf(cfg).splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _master_entry(cfg: Config, port: int) -> str:
    lines = [ln for ln in postconf(cfg, "-M", f"{port}/inet").splitlines()
             if ln.startswith(f"{port} ")]  # not postconf's "unmatched request" warning
    return " ".join(lines[0].split()) if lines else ""


def ensure_postfix(cfg: Config, apply: bool) -> list[Change]:
    changes = ensure_file(clients_file(cfg), client_map(cfg), 0o644, None, "postfix", apply)
    changes += ensure_file(recipients_file(cfg), recipient_map(cfg), 0o644, None, "postfix",
                           apply)
    current = _values(cfg)
    for key, value in postfix_settings(cfg, current).items():
        if current.get(key) != value:
            changes.append(Change("postfix", f"{key} = {value}"))
            if apply:
                postconf(cfg, "-e", f"{key}={value}")
    line = master_line(cfg)
    if line is not None and _master_entry(cfg, cfg.mail.listen_port or 0) != \
            " ".join(line.split()):
        changes.append(Change("postfix", f"master.cf: {line}"))
        if apply:
            postconf(cfg, "-M", f"{cfg.mail.listen_port}/inet={line}")
    if changes and apply:
        d = str(cfg.setup.postfix_dir)
        check = run(["postfix", "-c", d, "check"], timeout=60)
        if not check.ok:
            raise ConfigError(f"postfix check: {check.tail(3, 200)}")
        running = run(["postfix", "-c", d, "status"], timeout=30).ok
        # A new listener or new interfaces need a restart; a reload does the rest.
        if running and (line is not None or any("inet_interfaces" in c.detail
                                                for c in changes)):
            run(["postfix", "-c", d, "stop"], timeout=60)
            running = False
        done = run(["postfix", "-c", d, "reload" if running else "start"], timeout=60)
        if not done.ok:
            raise ConfigError(f"postfix {'reload' if running else 'start'}: {done.tail(3, 200)}")
    return changes


def cron_file(cfg: Config) -> bytes:
    assert cfg.path is not None
    wod = bin_dir() / "wod-backend"
    user = cfg.mail.backend_user
    lines = ["# written by wod-backend setup: the scheduled work of this backend.",
             "# Runs as the backend user; root steps go through the sudo helper.",
             f"WOD_BACKEND_CONFIG={cfg.path.resolve()}"]
    if cfg.schedule.flush:
        lines.append(f"* * * * *  {user}  {wod} outbox flush >/dev/null")
    if cfg.mail.worker:  # where systemd does not run it (worker/service.py): at boot, and
        # back within a minute after a crash (`worker start` does nothing while it runs)
        lines.append(f"@reboot  {user}  {wod} worker start >/dev/null")
        lines.append(f"* * * * *  {user}  {wod} worker start >/dev/null")
    if cfg.schedule.metrics_dir is not None:
        lines.append(f"* * * * *  {user}  {wod} metrics --textfile "
                     f"{cfg.schedule.metrics_dir}")
    if cfg.backups.dir is not None:  # root's: backups.dir is
        lines.append(f"17 * * * *  root  {wod} backups prune >/dev/null")
    if privd.wanted(cfg):  # the resident privileged side: at boot, back within a minute
        lines.append(f"@reboot  root  {wod} privd start >/dev/null")
        lines.append(f"* * * * *  root  {wod} privd start >/dev/null")
    if _firewall(cfg):
        lines.append(f"@reboot  root  /usr/sbin/nft -f {firewall.rules_file(cfg)}")
    if cfg.schedule.sweep:
        lines.append(f"* * * * *  {user}  {wod} sweep >/dev/null")
        if cfg.students.expiry_grace is not None:
            lines.append(f"* * * * *  {user}  {wod} expire >/dev/null")
    for entry in cfg.schedule.resets:
        fields = entry.split()
        lines.append(f"{' '.join(fields[:5])}  {user}  {wod} reset {fields[5]} {fields[6]} "
                     f"--customer 0")
    if cfg.schedule.report:  # at once when red, and daily
        lines.append(f"* * * * *  {user}  {wod} report >/dev/null")
        lines.append(f"0 {cfg.schedule.report_hour} * * *  {user}  {wod} report --daily "
                     f">/dev/null")
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
    if _firewall(cfg):
        units[firewall.unit_name(cfg)] = firewall.unit(cfg)
    for name, what, args, when in _timed_jobs(cfg):
        service(f"wod-backend-{name}", what, args)
        timer(f"wod-backend-{name}", what, when)
    return {k: v.encode() for k, v in units.items()}


def _timed_jobs(cfg: Config) -> list[tuple[str, str, str, str]]:
    """(unit name, what, wod-backend arguments, when) of the report and batch resets."""
    jobs = []
    if cfg.schedule.report:  # at once when red, and daily
        jobs += [("report", "mail the operator when checks turn red", "report",
                  "OnBootSec=1min\nOnUnitActiveSec=1min"),
                 ("report-daily", "the daily report", "report --daily",
                  f"OnCalendar=*-*-* {cfg.schedule.report_hour:02d}:00:00")]
    for i, entry in enumerate(cfg.schedule.resets):
        f = entry.split()
        jobs.append((f"reset-{i}", f"reset {f[5]} {f[6]}", f"reset {f[5]} {f[6]} "
                     f"--customer 0", f"OnCalendar={_calendar(f[:5])}"))
    return jobs


def _firewall(cfg: Config) -> bool:
    return cfg.mail.students_cannot_mail and cfg.students.manage_accounts


def _calendar(cron: list[str]) -> str:
    """A cron time ("30 3 * * *") as an OnCalendar expression ("*-*-* 03:30:00")."""
    minute, hour, dom, month, dow = cron
    days = "" if dow == "*" else f"{dow} "
    return f"{days}*-{month}-{dom} {hour}:{minute}:00".replace("*/", "0/")


def ensure_schedule(cfg: Config, apply: bool) -> list[Change]:
    if not systemd.is_init():
        owner: Owner = None
        return ensure_file(cfg.setup.cron_file, cron_file(cfg), 0o644, owner, "schedule",
                           apply)
    changes: list[Change] = []
    for name, content in systemd_units(cfg).items():
        changes += ensure_file(cfg.setup.systemd_dir / name, content, 0o644, None,
                               "schedule", apply)
    if changes and apply:
        systemd.activate([n for n in systemd_units(cfg) if n.endswith(".timer")
                          or n == firewall.unit_name(cfg)], restart=False)
    return changes
