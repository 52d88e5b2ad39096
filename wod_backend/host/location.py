"""doctor's checks of this host as a Workshops-on-Demand location: the way orders come
in (postfix's port and names, a probe mail through them), what the intake refused
lately, the frontend's rows for this location, and the kernels the content needs.
"""

from __future__ import annotations

import ipaddress
import secrets
import smtplib
import socket
import time
from typing import Any, Optional
from urllib.parse import urlsplit

from wod_backend.config import Config
from wod_backend.host.check import Check
from wod_backend.remote.http import HttpError
from wod_backend.state import journal as jr
from wod_backend.state import stats

PROBE_WAIT = 30.0  # seconds a probe may take from SMTP to the journal


def _local_names() -> set[str]:
    names = {"localhost", socket.gethostname(), socket.getfqdn()}
    return {n.lower() for n in names if n}


def _is_here(cfg: Config, host: str) -> bool:
    """Whether `host` is this machine: a loopback address, its names, or one of the
    location's mail.domains."""
    host = host.lower().strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    return host in _local_names() or host in {d.lower() for d in cfg.mail.domains}


def _listen_items(listen: str) -> list[str]:
    """postfix's inet_interfaces as a list ("all", "loopback-only", addresses, names)."""
    return listen.replace(",", " ").split()


def _loopback_only(listen: str) -> bool:
    items = _listen_items(listen)
    if items == ["loopback-only"]:
        return True
    if not items or "all" in items:
        return False
    try:
        return all(ipaddress.ip_address(i).is_loopback for i in items)
    except ValueError:
        return items == ["localhost"]


def intake_port(cfg: Config) -> int:
    return cfg.mail.listen_port or 25


def check_mail_path(cfg: Config) -> Check:
    """Where the frontend mails orders, and whether it can reach it."""
    if not cfg.mail.backend_user:
        return Check("mail path", "ok", "not checked (mail.backend_user unset: no postfix)")
    domain = cfg.mail.domains[0] if cfg.mail.domains else "localhost"
    where = f"orders to {cfg.mail.backend_user}@{domain} on port {intake_port(cfg)}"
    if cfg.frontend is not None:
        host = urlsplit(cfg.frontend.url).hostname or ""
        if _loopback_only(cfg.mail.listen) and not _is_here(cfg, host):
            return Check("mail path", "warn", f"{where}, but postfix listens on the loopback "
                         f"only (mail.listen: {cfg.mail.listen}) and the frontend ({host}) "
                         f"is not on this host: its orders cannot arrive",
                         "set mail.listen to the address the frontend connects to (or all), "
                         "then setup")
    if not cfg.mail.domains:
        return Check("mail path", "warn", f"{where}; mail.domains is empty: a frontend "
                     f"mailing the location's FQDN is refused (relay access denied)",
                     "list the location's FQDN(s) in mail.domains, then setup")
    return Check("mail path", "ok", where)


def _probe_host(cfg: Config) -> str:
    items = _listen_items(cfg.mail.listen)
    if _loopback_only(cfg.mail.listen) or "all" in items:
        return "127.0.0.1"
    return items[0]


def check_probe(cfg: Config) -> Check:
    """A probe mail through the frontend's port and domain must reach the journal (as
    a probe: nothing runs)."""
    if not cfg.mail.backend_user or not cfg.students.manage_accounts:
        return Check("mail probe", "ok", "not checked (no backend user: no postfix here)")
    domain = cfg.mail.domains[0] if cfg.mail.domains else "localhost"
    rcpt = f"{cfg.mail.backend_user}+probe@{domain}"
    host, port = _probe_host(cfg), intake_port(cfg)
    token = secrets.token_hex(8)
    message = (f"From: wod-backend doctor <root@{domain}>\nTo: {rcpt}\n"
               f"Subject: PROBE {token}\n\nA probe from wod-backend doctor: nothing runs.\n")
    try:
        with smtplib.SMTP(host, port, timeout=15) as smtp:
            smtp.sendmail(f"root@{domain}", [rcpt], message.encode())
    except (OSError, smtplib.SMTPException) as exc:
        return Check("mail probe", "FAIL", f"{host}:{port} refused the probe to {rcpt}: "
                     f"{str(exc)[:160]}", "wod-backend setup (postfix), then see "
                     "postfix's maillog_file")
    deadline = time.monotonic() + PROBE_WAIT
    conn = jr.Journal(cfg.state_dir).conn
    while not stats.probe_seen(conn, f"PROBE {token}"):
        if time.monotonic() > deadline:
            return Check("mail probe", "FAIL", f"postfix took the probe to {rcpt} on "
                         f"{host}:{port}, but it did not reach the journal in "
                         f"{PROBE_WAIT:g}s", "see postfix's maillog_file and the backend "
                         "user's procmail.log")
        time.sleep(0.2)
    return Check("mail probe", "ok", f"a probe to {rcpt} on {host}:{port} reached the "
                                     f"journal")


# What to do about the usual shapes of a misconfigured intake.
FIXES = {
    "policy: unsigned order": "the unmodified frontend never signs: remove "
                              "intake.secret_file, or make the frontend sign",
    "policy: relay": "add the frontend's address (as postfix sees it) to "
                     "intake.allowed_relays",
    "policy: envelope sender": "add the frontend's sender (WODSENDER) to "
                               "intake.allowed_senders",
    "unknown workshop": "the frontend's workshop is missing from the content roots",
    "student N out of range": "students.min/max or the frontend's location row "
                              "(basestdid) disagree",
}


def _fix(reason: str) -> str:
    return next((fix for key, fix in FIXES.items() if reason.startswith(key)),
                "see `wod-backend history`")


def refusals(cfg: Config, hours: float = 24) -> dict[str, int]:
    journal = jr.Journal(cfg.state_dir)
    return stats.refused_since(journal.conn, time.time() - hours * 3600)


def check_refusals(cfg: Config) -> Check:
    """Nothing refused in silence: refusals of the last 24 h by reason, and red when the
    latest mails were all refused for one reason (the shape of a misconfiguration)."""
    journal = jr.Journal(cfg.state_dir)
    since = time.time() - 86400
    recent = stats.recent_mail_outcomes(journal.conn, since, limit=5)
    counts = stats.refused_since(journal.conn, since)
    listed = "; ".join(f"{n}x {reason}" for reason, n in
                       sorted(counts.items(), key=lambda kv: -kv[1])[:3])
    reasons = {reason for outcome, reason in recent if outcome == jr.REFUSED}
    if len(recent) >= 3 and all(o == jr.REFUSED for o, _ in recent) and len(reasons) == 1:
        (reason,) = reasons
        return Check("intake", "FAIL", f"the last {len(recent)} mails were all refused: "
                     f"{reason}", _fix(reason))
    if counts:
        return Check("intake", "warn", f"refused in the last 24 h: {listed}",
                     _fix(max(counts, key=lambda r: counts[r])))
    return Check("intake", "ok", "nothing refused in the last 24 h")


def _int(value: Any) -> Optional[int]:
    """The frontend's numbers come as numbers, strings or null."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _hub_address(cfg: Config) -> Optional[tuple[str, str, int]]:
    """(scheme, host, port) students reach the hub at."""
    if cfg.jupyterhub is None:
        return None
    url = urlsplit(cfg.jupyterhub.url)
    return (url.scheme, (url.hostname or "").lower(),
            url.port or (443 if url.scheme == "https" else 80))


def check_location(cfg: Config) -> Check:
    """The frontend's view of this location: its `locations` row and its student rows."""
    if cfg.frontend is None:
        return Check("location", "ok", "not checked (no frontend configured)")
    from wod_backend.remote.frontend import Frontend

    fe = Frontend(cfg.frontend, retry_delays=())
    try:
        rows = fe.call("GET", "locations", auth=False)
    except HttpError as exc:
        return Check("location", "FAIL", f"GET /locations: {exc}", "is frontend.url right?")
    hub = _hub_address(cfg)
    names = {d.lower() for d in cfg.mail.domains} | ({hub[1]} if hub else set())
    mine = [r for r in (rows if isinstance(rows, list) else []) if isinstance(r, dict)
            and str(r.get("name") or "").lower() in names]
    s = cfg.students
    first = (cfg.mail.domains or ([hub[1]] if hub else ["<this host>"]))[0]
    want = (f"name={first}, basestdid={s.base_id}"
            + (f", proto={hub[0]}, port={hub[2]}" if hub else ""))
    if not mine:
        return Check("location", "FAIL", f"no row of the frontend's locations names this "
                     f"host ({', '.join(sorted(names)) or 'no mail.domains'})",
                     f"add a locations row: {want}")
    row = mine[0]
    name = str(row.get("name"))
    problems = []
    if _int(row.get("basestdid")) != s.base_id:
        problems.append(f"basestdid is {row.get('basestdid')!r}, students.base_id is "
                        f"{s.base_id}")
    if hub is not None:
        if str(row.get("proto") or "").lower() != hub[0]:
            problems.append(f"proto is {row.get('proto')!r}, the hub is {hub[0]}")
        if _int(row.get("port")) != hub[2]:
            problems.append(f"port is {row.get('port')!r}, the hub listens on {hub[2]}")
    if problems:
        return Check("location", "FAIL", f"row {name}: " + "; ".join(problems),
                     f"set the row to {want}, or this configuration to the row")
    return _check_students(cfg, fe, name, hub, names)


def _check_students(cfg: Config, fe: Any, name: str,
                    hub: Optional[tuple[str, str, int]], names: set[str]) -> Check:
    """This location's student rows: numbers in range, urls at this hub (its scheme and
    port, one of this location's names, the student's own server)."""
    s = cfg.students
    try:
        rows = fe.call("GET", "students")
    except HttpError as exc:
        return Check("location", "warn", f"row {name} matches; GET /students: {exc}")
    here = [r for r in (rows if isinstance(rows, list) else []) if isinstance(r, dict)
            and str(r.get("location") or "").lower() == name.lower()]
    bad = []
    for r in here:
        rid = _int(r.get("id"))
        n = None if rid is None else rid - s.base_id
        if n is None or not s.min <= n <= s.max:
            bad.append(f"student row {r.get('id')} is outside {s.base_id + s.min}.."
                       f"{s.base_id + s.max}")
            continue
        if hub is None:
            continue
        url = urlsplit(str(r.get("url") or ""))
        port = url.port or (443 if url.scheme == "https" else 80)
        if (url.scheme, port) != (hub[0], hub[2]) or (url.hostname or "").lower() \
                not in names or not url.path.startswith(f"/user/student{n}/"):
            bad.append(f"student row {rid} has url {r.get('url')!r}, not "
                       f"{hub[0]}://{name}:{hub[2]}/user/student{n}/lab")
    if bad:
        return Check("location", "FAIL", f"{len(bad)} of {len(here)} student rows of {name} "
                     f"are wrong, first: {bad[0]}", "fix those rows in the frontend's "
                     "database (students table: url, location)")
    return Check("location", "ok", f"row {name} matches; {len(here)} student rows point "
                                   f"at this hub")


def check_kernels(cfg: Config) -> Check:
    """Every notebook's kernel is on the managed hub."""
    from wod_backend.ops import kernels
    from wod_backend.planning.catalog import Catalog

    hub = cfg.jupyterhub
    if hub is None or not hub.manage:
        return Check("kernels", "ok", "not checked (the hub is not managed here)")
    if not (hub.venv / "bin" / "python").exists():
        return Check("kernels", "FAIL", "the managed hub is not installed", "wod-backend setup")
    served = kernels.installed(hub.venv)
    missing: dict[str, list[str]] = {}
    for ws in Catalog(cfg).all():
        for path, name in kernels.lacking(ws.path, served):
            missing.setdefault(name, []).append(f"{ws.folder}/{path.name}")
    if missing:
        first = sorted(missing)[0]
        return Check("kernels", "FAIL", "the catalog needs kernels the hub lacks: " + "; ".join(
            f"{k} ({len(v)} notebooks, e.g. {v[0]})" for k, v in sorted(missing.items())),
            f"add {first} to jupyterhub.kernels (pip or dirs), then setup")
    return Check("kernels", "ok", f"the hub serves {', '.join(sorted(served))}: every "
                                  f"notebook's kernel")
