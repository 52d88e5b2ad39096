"""Who may order: the intake policy, checked before anything is executed.

- Allowed envelope senders (`Return-Path:`, written by our own MTA from MAIL FROM).
- Allowed relays: the client address in the topmost `Received:` line, the one our own
  postfix stamped on arrival, which a sender cannot forge (lines below it can be).
  `local` stands for mail submitted on this machine (no client address).
- Signed orders: with `intake.secret_file`, an order must carry
  `X-WoD-Signature: t=<unix time>; s=<hex HMAC-SHA256>` over the canonical string
  `"{ACTION}\\n{STUDENTS}\\n{CUSTOMER}\\n{WORKSHOP}\\n{t}"` (STUDENTS as in the
  subject: `12` or `3,6`), within `intake.window` seconds of now, each signature once.
- Abuse limits: orders per minute per sender (`intake.max_per_minute`).
A refused order is recorded with its reason, then discarded (exit 0: bouncing to a
forged sender is backscatter) or bounced (exit 77) if `intake.refused: bounce`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Optional

from wod_backend.config import Config, read_secret
from wod_backend.errors import Refused
from wod_backend.intake.mail import Envelope
from wod_backend.order import Order
from wod_backend.state.journal import Journal

HEADER = "X-WoD-Signature"
_RELAY = re.compile(r"^from\s+\S+\s+\(([^)]*)\)", re.IGNORECASE)
_BRACKET_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")
_SIGNATURE = re.compile(r"^\s*t=(\d{1,12})\s*;\s*s=([0-9a-f]{64})\s*$")


def envelope_sender(env: Envelope) -> str:
    rp = (env.return_path or "").strip()
    return rp[1:-1].strip().lower() if rp.startswith("<") and rp.endswith(">") else rp.lower()


def relay_address(env: Envelope) -> Optional[str]:
    """The client address our MTA saw, 'local' for local submission, None if unknown."""
    if not env.received:
        return None
    top = env.received[0]
    if " by " not in f" {top} ":
        return None  # not an MTA's stamp
    m = _RELAY.match(top)
    if m:
        ip = _BRACKET_IP.search(m.group(1))
        return ip.group(1) if ip else None
    if re.search(r"\(Postfix, from userid \d+\)", top) or top.lower().startswith("by "):
        return "local"
    return None


def sender_allowed(sender: str, allowed: list[str]) -> bool:
    for pattern in allowed:
        pattern = pattern.strip().lower()
        if pattern.startswith("@") and sender.endswith(pattern):
            return True
        if sender == pattern:
            return True
    return False


def relay_allowed(relay: Optional[str], allowed: list[str]) -> bool:
    if relay is None:
        return False
    if relay == "local":
        return "local" in allowed
    import ipaddress

    try:
        addr = ipaddress.ip_address(relay)
    except ValueError:
        return False
    for net in allowed:
        if net == "local":
            continue
        try:
            if addr in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


def canonical(order: Order, timestamp: int) -> str:
    students = (str(order.students[0]) if not order.is_range
                else f"{order.students[0]},{order.students[-1]}")
    return f"{order.action.value}\n{students}\n{order.customer}\n{order.workshop}\n{timestamp}"


def sign(secret: str, order: Order, timestamp: Optional[int] = None) -> str:
    """The header value for an order: what any frontend computes in a few lines."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), canonical(order, t).encode(), hashlib.sha256)
    return f"t={t}; s={mac.hexdigest()}"


def signature_header(env: Envelope) -> Optional[str]:
    values = [v for k, v in env.headers if k.lower() == HEADER.lower()]
    if len(values) > 1:
        raise Refused("policy: more than one signature header")
    return values[0] if values else None


def check_sender(cfg: Config, env: Envelope) -> None:
    """Sender and relay checks: before the order is even parsed."""
    policy = cfg.intake
    if policy.allowed_senders:
        sender = envelope_sender(env)
        if not sender_allowed(sender, policy.allowed_senders):
            raise Refused(f"policy: envelope sender {sender or '(none)'!r} is not allowed")
    if policy.allowed_relays:
        relay = relay_address(env)
        if not relay_allowed(relay, policy.allowed_relays):
            raise Refused(f"policy: relay {relay or '(unknown)'} is not allowed")


def check_signature(cfg: Config, env: Envelope, order: Order, journal: Journal,
                    msgkey: str) -> None:
    policy = cfg.intake
    if policy.secret_file is None:
        return
    value = signature_header(env)
    if value is None:
        raise Refused(f"policy: unsigned order (no {HEADER} header)")
    m = _SIGNATURE.match(value)
    if not m:
        raise Refused(f"policy: malformed {HEADER} header")
    t, given = int(m.group(1)), m.group(2)
    if abs(time.time() - t) > policy.window:
        raise Refused(f"policy: signature outside the {policy.window:g}s window")
    expected = sign(read_secret(policy.secret_file), order, t).split("s=")[1]
    if not hmac.compare_digest(given, expected):
        raise Refused("policy: bad signature")
    seen = journal.use_signature(given, msgkey, time.time() - 4 * policy.window)
    if seen is not None and seen != msgkey:
        # The same message coming back (postfix retrying after a 75) is not a replay.
        raise Refused("policy: signature already used (replayed order)")


def check_rate(cfg: Config, env: Envelope, journal: Journal, exclude: int) -> None:
    limit = cfg.intake.max_per_minute
    if not limit:
        return
    sender = envelope_sender(env) or (relay_address(env) or "(unknown)")
    count = journal.orders_from(sender, time.time() - 60, exclude)
    if count >= limit:
        raise Refused(f"policy: more than {limit} orders a minute from {sender}")


def sender_of(env: Envelope) -> str:
    return envelope_sender(env) or (relay_address(env) or "")
