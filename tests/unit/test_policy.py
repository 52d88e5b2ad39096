"""Intake policy: senders, relays, signed orders, replays, abuse limits; state at rest."""

from __future__ import annotations

import json
import stat
import time

import pytest

from support.cli import invoke
from wod_backend.intake.mail import parse_envelope
from wod_backend.order import Action, Order
from wod_backend.intake.policy import (canonical, envelope_sender, relay_address, relay_allowed,
                                sender_allowed, sign)

SECRET = "frontend-shared-secret"


@pytest.mark.parametrize("received, expected", [
    ("from api-db.example.org (api-db.example.org [10.0.0.5]) by backend (Postfix) with "
     "ESMTP id 1", "10.0.0.5"),
    ("from frontend (unknown [192.0.2.7]) by backend (Postfix) with SMTP id 2", "192.0.2.7"),
    ("from x (localhost [IPv6:::1]) by backend (Postfix) with ESMTP id 3", "::1"),
    ("by backend (Postfix, from userid 1000) id 4; Sun, 29 Nov 2026", "local"),
    ("from evil ([10.0.0.5]) claims-to-be-trusted", None),
    ("garbage", None),
])
def test_relay_from_the_topmost_received_line(received, expected):
    env = parse_envelope(f"Received: {received}\nSubject: x\n\nb\n".encode())
    assert relay_address(env) == expected


def test_only_the_topmost_received_line_counts():
    env = parse_envelope(b"Received: from a (b [198.51.100.9]) by backend (Postfix) id 1\n"
                         b"Received: from forged (trusted [10.0.0.5]) by x id 2\n"
                         b"Subject: x\n\nWKSHP-A\n")
    assert relay_address(env) == "198.51.100.9"
    assert not relay_allowed("198.51.100.9", ["10.0.0.0/24", "local"])
    assert relay_allowed("10.0.0.5", ["10.0.0.0/24"]) and relay_allowed("local", ["local"])


def test_senders():
    env = parse_envelope(b"Return-Path: <WOD-API@Frontend.Example.org>\nSubject: x\n\nb\n")
    assert envelope_sender(env) == "wod-api@frontend.example.org"
    assert sender_allowed("wod-api@frontend.example.org", ["@frontend.example.org"])
    assert not sender_allowed("wod-api@frontend.example.org.evil", ["@frontend.example.org"])
    assert not sender_allowed("", ["wod-api@frontend.example.org"])


def test_canonical_string_is_documented_form():
    order = Order(Action.RESET, (3, 4, 5, 6), "4712", "WKSHP-Ansible101", is_range=True)
    assert canonical(order, 1700000000) == "RESET\n3,6\n4712\nWKSHP-Ansible101\n1700000000"
    import hashlib
    import hmac
    expected = hmac.new(SECRET.encode(), canonical(order, 1700000000).encode(),
                        hashlib.sha256).hexdigest()
    assert sign(SECRET, order, 1700000000) == f"t=1700000000; s={expected}"


@pytest.fixture
def signed(demo, tmp_path):
    secret = tmp_path / "intake.secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    demo.write_text(demo.read_text() + f"intake: {{secret_file: {secret}, window: 60}}\n")
    return demo


def mail(subject: str, body: str, headers: str = "", mid: str | None = None) -> bytes:
    mid = mid or f"<{time.monotonic_ns()}@test>"
    return f"Message-ID: {mid}\n{headers}Subject: {subject}\n\n{body}\n".encode()


def signature(action, students, customer, workshop, t=None, is_range=False) -> str:
    order = Order(Action[action], students, customer, workshop, is_range=is_range)
    return f"X-WoD-Signature: {sign(SECRET, order, t)}\n"


def last(demo) -> dict:
    return json.loads(invoke(["--config", str(demo), "history", "--json"]).out)[0]


def test_signed_order_runs_unsigned_and_forged_are_discarded(signed, demo_cfg):
    home = demo_cfg.students.home_root
    r = invoke(["--config", str(signed), "mail"],
               input=mail("CREATE 5 0", "WKSHP-API101",
                          signature("CREATE", (5,), "0", "WKSHP-API101")))
    assert r.code == 0 and last(signed)["outcome"] == "done"
    for headers, reason in (
            ("", "unsigned order"),
            (signature("CREATE", (7,), "0", "WKSHP-API101"), "bad signature"),  # other student
            (signature("CREATE", (6,), "0", "WKSHP-API101", t=int(time.time()) - 3600),
             "outside the 60s window"),
            ("X-WoD-Signature: s=deadbeef\n", "malformed"),
            (signature("CREATE", (6,), "0", "WKSHP-API101") * 2, "more than one")):
        r = invoke(["--config", str(signed), "mail"],
                   input=mail("CREATE 6 0", "WKSHP-API101", headers))
        assert r.code == 0  # discarded, not bounced: no backscatter to forged senders
        entry = last(signed)
        assert entry["outcome"] == "refused" and reason in entry["reason"]
        assert not (home / "student6").exists()


def test_replayed_signature_refused_but_postfix_retry_accepted(signed, demo_cfg):
    sig = signature("CREATE", (8,), "0", "WKSHP-API101")
    first = mail("CREATE 8 0", "WKSHP-API101", sig, mid="<one@test>")
    assert invoke(["--config", str(signed), "mail"], input=first).code == 0
    # the same signed order in a new envelope: a replay
    r = invoke(["--config", str(signed), "mail"],
               input=mail("CREATE 8 0", "WKSHP-API101", sig, mid="<two@test>"))
    assert r.code == 0 and "signature already used" in last(signed)["reason"]
    # the same message again (postfix retrying): a duplicate, not a refusal
    invoke(["--config", str(signed), "mail"], input=first)
    assert last(signed)["outcome"] == "duplicate"


def test_bounce_mode_and_sender_relay_lists(demo, demo_cfg):
    demo.write_text(demo.read_text() + "intake: {allowed_senders: ['@frontend.example.org'], "
                                       "allowed_relays: ['10.0.0.0/24'], refused: bounce}\n")
    trusted = ("Return-Path: <api@frontend.example.org>\nReceived: from api-db "
               "(api-db [10.0.0.5]) by backend (Postfix) with SMTP id 1\n")
    r = invoke(["--config", str(demo), "mail"], input=mail("CREATE 9 0", "WKSHP-API101",
                                                           trusted))
    assert r.code == 0, r.err
    r = invoke(["--config", str(demo), "mail"], input=mail(
        "PURGE 9 0", "WKSHP-API101", "Return-Path: <student@evil.example>\n" + trusted[41:]))
    assert r.code == 77 and "envelope sender 'student@evil.example' is not allowed" in r.err
    r = invoke(["--config", str(demo), "mail"], input=mail(
        "PURGE 9 0", "WKSHP-API101", trusted.replace("10.0.0.5", "203.0.113.9")))
    assert r.code == 77 and "relay 203.0.113.9 is not allowed" in r.err
    assert (demo_cfg.students.home_root / "student9" / "WKSHP-API101").is_dir()


def test_rate_limit_per_sender(demo):
    demo.write_text(demo.read_text() + "intake: {max_per_minute: 3}\n")
    rp = "Return-Path: <flood@example.org>\n"
    codes = [invoke(["--config", str(demo), "mail"],
                    input=mail(f"CREATE {n} 0", "WKSHP-API101", rp)).code for n in range(1, 6)]
    assert codes == [0] * 5
    outcomes = [e["outcome"] for e in json.loads(
        invoke(["--config", str(demo), "history", "--json"]).out)][::-1]
    assert outcomes == ["done", "done", "done", "refused", "refused"]
    assert "more than 3 orders a minute from flood@example.org" in last(demo)["reason"]


def test_range_bound(demo):
    demo.write_text(demo.read_text() + "intake: {max_range: 5}\n")
    r = invoke(["--config", str(demo), "reset", "WKSHP-Ansible101", "1-6", "--dry-run"])
    assert r.code == 65 and "range of 6 students exceeds intake.max_range 5" in r.err


def test_send_test_signs(signed):
    r = invoke(["--config", str(signed), "send-test", "create", "WKSHP-API101", "4",
                "--dry-run"])
    header = next(line for line in r.out.splitlines() if line.startswith("X-WoD-Signature"))
    r = invoke(["--config", str(signed), "mail"],
               input=mail("CREATE 4 0", "WKSHP-API101", header + "\n"))
    assert r.code == 0 and last(signed)["outcome"] == "done"


def test_state_at_rest_is_private(demo, demo_cfg):
    invoke(["--config", str(demo), "create", "WKSHP-API101", "3"])
    state = demo_cfg.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("journal.db", "wod-backend.log"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((state / "locks").stat().st_mode) == 0o700
