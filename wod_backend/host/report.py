"""`wod-backend report`: the operator hears about trouble (schedule.report: ADDRESS).

Every minute the cheap checks run (doctor's, less the mail probe, the content check and
the appliances' SSH); when they turn red the report is mailed at once, and once a day
it is mailed whatever the state. A report holds doctor's red lines, reconcile's
disagreements, the dead outbox items, the refusals of the last 24 h by reason and the
seats in use. It goes through the local postfix (`sendmail`; `mail.relayhost` where
postfix delivers locally only) and is never mailed twice for the same state:
`state_dir/report.json` keeps the last red state mailed and the last daily report's day.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Optional

from wod_backend.config import Config
from wod_backend.errors import ConfigError, TemporaryFailure, WodError
from wod_backend.host import doctor, location
from wod_backend.system.run import run

STATE = "report.json"
SENDMAIL = "/usr/sbin/sendmail"
# Not every minute: they mail a probe, render every template, reach every appliance.
SLOW = ("check_probe", "check_content", "check_appliances")


@dataclass
class Report:
    red: list[str]
    disagreements: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    seats: tuple[int, int] = (0, 0)  # (in use, of)

    def text(self) -> str:
        out = [f"Red checks ({len(self.red)}):"] + [f"  {x}" for x in self.red or ["none"]]
        out += ["", f"Disagreements with the frontend or the hub ({len(self.disagreements)}):"]
        out += [f"  {x}" for x in self.disagreements or ["none"]]
        out += ["", f"Reports given up (dead outbox items: {len(self.dead)}):"]
        out += [f"  {x}" for x in self.dead or ["none"]]
        out += ["", "Orders refused in the last 24 h:"]
        out += [f"  {why}: {n}" for why, n in sorted(self.refused.items())] or ["  none"]
        out += ["", f"Seats in use: {self.seats[0]} of {self.seats[1]}"]
        return "\n".join(out) + "\n"


def red_checks(cfg: Config, full: bool) -> list[str]:
    checks = [c for c in doctor.CHECKS if full or c.__name__ not in SLOW]
    return [f"{c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "")
            for c in doctor.run_checks(cfg, checks) if c.status == "FAIL"]


def gather(cfg: Config, red: list[str]) -> Report:
    from wod_backend.lifecycle.reconcile import find
    from wod_backend.ops import outbox_admin, status

    numbers = list(range(cfg.students.min, cfg.students.max + 1))
    try:
        disagreements = [f"student{f.student}: {f.what} ({f.cause})"
                         for f in find(cfg, numbers)]
    except WodError as exc:
        disagreements = [f"reconcile could not run: {exc.reason}"]
    dead = [f"{i.get('key', '?')}: {i.get('last_error') or i.get('error') or ''}".strip()
            for i in outbox_admin.items(cfg, True, 1000) if i.get("state") == "dead"]
    rows = status.rows(cfg, numbers)
    return Report(red, disagreements, dead, location.refusals(cfg),
                  (sum(1 for r in rows if r.state != "free"), len(rows)))


def _load(cfg: Config) -> dict:
    try:
        data = json.loads((cfg.state_dir / STATE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(cfg: Config, state: dict) -> None:
    path = cfg.state_dir / STATE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def compose(cfg: Config, report: Report, daily: bool) -> EmailMessage:
    host = socket.getfqdn()
    msg = EmailMessage()
    msg["From"] = cfg.mail.backend_address
    msg["To"] = cfg.schedule.report or ""
    what = f"{len(report.red)} red check(s)" if report.red else "all checks green"
    msg["Subject"] = f"wod-backend {host}: {'daily report' if daily else 'TROUBLE'}: {what}"
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid("wod-report")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(report.text())
    return msg


def send(msg: EmailMessage) -> None:
    if not os.path.exists(SENDMAIL):
        raise ConfigError(f"{SENDMAIL} not found: the report goes through the local postfix")
    r = run([SENDMAIL, "-t", "-oi"], input=msg.as_bytes(), timeout=60)
    if not r.ok:
        raise TemporaryFailure(f"sendmail {r.describe()}: {r.tail(2, 200)}")


def report(cfg: Config, daily: bool = False, dry_run: bool = False
           ) -> Optional[EmailMessage]:
    """Mail the report if it is due; what was mailed (or would be), or None."""
    if not cfg.schedule.report:
        raise ConfigError("config key schedule.report: no address to mail reports to")
    state = _load(cfg)
    red = red_checks(cfg, full=daily)
    today = time.strftime("%Y-%m-%d")
    # The state is which checks are red (their details move: counts, ages).
    names = sorted({line.split(":", 1)[0] for line in red})
    key = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16] if red else ""
    if daily:
        due = state.get("daily") != today
    else:
        due = bool(red) and state.get("red") != key
    if not red and not daily:
        state.pop("red", None)  # green again: the next red state is news
    if not due:
        if not dry_run:
            _save(cfg, state)
        return None
    msg = compose(cfg, gather(cfg, red), daily)
    if not dry_run:
        send(msg)
        state["daily" if daily else "red"] = today if daily else key
        _save(cfg, state)
    return msg
