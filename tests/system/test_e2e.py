"""End to end through the real mail path, as in production.

postfix on loopback delivers to an unprivileged backend user whose procmail (from
procmailrc.example) runs `wod-backend mail`; root steps go through the sudo helper
(scripts/sudoers.example); real Linux students, a real JupyterHub spawning the real
jupyterhub-singleuser, and the frontend played by the contract server.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import smtplib
import time
from email.utils import make_msgid

import pytest

from support.cli import invoke
from support.mailpath import BACKEND_USER, LOW, UID_BASE, mail_backend
from support.accounts import password_works

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not all(shutil.which(p) for p in ("postfix", "procmail", "sudo",
                                                         "configurable-http-proxy")),
                       reason="needs postfix, procmail, sudo and CHP"),
    pytest.mark.slow,
]

@pytest.fixture(scope="module")
def backend():
    with mail_backend() as b:
        yield b


def test_create_cleanup_through_postfix_from_frontend_bytes(backend):
    n, user = LOW, f"student{LOW}"
    reply = backend.frontend_send(f"CREATE {n} 4711 ada@example.org", "WKSHP-API101")
    assert reply.startswith(b"220")
    backend.wait("CREATE reported", lambda: backend.student(n)["password"]
                 and backend.fe.state.customers[4711]["active"] is True)
    password = backend.student(n)["password"]
    assert password_works(user, password)
    assert backend.hub.wait_server(user, ready=True, bound=90)
    ws = backend.homes / user / "WKSHP-API101"
    nb = json.loads((ws / "0-ReadMeFirst.ipynb").read_text())
    assert "E2E" in "".join(nb["cells"][0]["source"])
    assert (ws / "0-ReadMeFirst.ipynb").stat().st_uid == UID_BASE + n
    entry = next(e for e in backend.history() if e["action"] == "CREATE")
    assert entry["outcome"] == "done" and entry["source"] == "mail"
    assert "improper command pipelining" in backend.postfix.log()

    backend.frontend_send(f"CLEANUP {n} 4711", "WKSHP-API101")
    backend.wait("CLEANUP reported", lambda: backend.fe.state.customers[4711]["cleaned"])
    customer = backend.fe.state.customers[4711]
    assert customer["completionPercentage"] == 0
    assert backend.student(n)["assigned"] is False
    assert backend.student(n)["password"] != password
    assert not password_works(user, password)
    assert backend.hub.wait_server(user, ready=False, bound=60)
    assert list((backend.homes / user).iterdir()) == []


def test_reset_range_of_a_reset_workshop(backend):
    a, b = LOW + 2, LOW + 3
    for n in (a, b):
        backend.smtp_send(f"CREATE {n} 4712", "WKSHP-Ansible101")
    backend.wait("both created", lambda: all(backend.student(n)["password"]
                                             for n in (a, b)))
    lab = backend.root / "state" / "labs" / "WKSHP-Ansible101"
    backend.wait("lab files", lambda: (lab / f"student{b}.lab").exists())
    for n in (a, b):
        backend.smtp_send(f"CLEANUP {n} 4712", "WKSHP-Ansible101")
    backend.wait("cleaned", lambda: backend.fe.state.customers[4712]["cleaned"] is True
                 and len([e for e in backend.history() if e["action"] == "CLEANUP"
                          and e["customer"] == "4712" and e["outcome"] == "done"]) == 2)
    assert backend.fe.state.customers[4712]["active"] is False
    assert backend.student(a)["assigned"] is True  # reset workshop: kept until RESET
    backend.frontend_send(f"RESET {a},{b} 4712", "WKSHP-Ansible101")
    backend.wait("reset", lambda: backend.fe.state.workshops[2]["capacity"] == 2)
    assert backend.student(a)["assigned"] is False and backend.student(b)["assigned"] is False
    assert not (lab / f"student{a}.lab").exists()
    assert list((backend.homes / f"student{a}").iterdir()) == []


def test_purge_deferred_until_cleaned_then_retried_by_postfix(backend):
    n = LOW + 5
    backend.smtp_send(f"CREATE {n} 4713", "WKSHP-Python101")
    backend.wait("created", lambda: backend.fe.state.customers[4713]["active"] is True)
    backend.smtp_send(f"PURGE {n} 4713", "WKSHP-Python101")
    backend.wait("purge deferred (75)", lambda: any(
        e["action"] == "PURGE" and "not cleaned yet" in (e["reason"] or "")
        for e in backend.history()))
    backend.wait("postfix to defer it", lambda: "status=deferred" in backend.postfix.log())
    backend.fe.state.customers[4713]["cleaned"] = True  # the portal's own cleanup
    backend.wait("purge done on postfix's retry", lambda: any(
        e["action"] == "PURGE" and e["outcome"] == "done" for e in backend.history()))
    assert backend.student(n)["assigned"] is False
    assert list((backend.homes / f"student{n}").iterdir()) == []


def test_burst_of_20_creates_all_done_each_reported_once(backend):
    students = range(LOW + 10, LOW + 30)
    backend.send_at_once([(f"CREATE {n} 4714", "WKSHP-Python101") for n in students])
    def creates():
        return [e for e in backend.history() if e["action"] == "CREATE"
                and e["students"][0] in students]

    backend.wait("20 orders done", lambda: len(creates()) == 20 and all(
        e["outcome"] == "done" for e in creates()), timeout=300)
    for n in students:
        puts = backend.fe.puts_for(f"student/{n}")
        assert len([p for p in puts if "password" in p]) == 1
        assert password_works(f"student{n}", backend.student(n)["password"])
    backend.wait("the mail queue to drain", backend.postfix.queue_empty, timeout=60)


def test_same_message_twice_runs_once_and_same_student_serialized(backend):
    n = LOW + 35
    mid = make_msgid("twice")
    for _ in range(2):
        backend.smtp_send(f"CREATE {n} 4715", "WKSHP-Python101", message_id=mid)
    backend.wait("one done, one duplicate", lambda: sorted(
        e["outcome"] for e in backend.history() if e["message_id"] == mid) ==
        ["done", "duplicate"])
    assert len([p for p in backend.fe.puts_for(f"student/{n}") if "password" in p]) == 1
    # two different orders for one student at the same moment: one after the other
    m = LOW + 36
    backend.send_at_once([(f"CREATE {m} 4716", "WKSHP-Python101")] * 2)
    backend.wait("both done", lambda: len([e for e in backend.history()
                                           if e["action"] == "CREATE" and
                                           e["students"] == [m] and
                                           e["outcome"] == "done"]) == 2)
    runs = sorted((e for e in backend.history() if e["students"] == [m]),
                  key=lambda e: e["id"])
    # consistent end state: the password the frontend holds is the one that works
    assert password_works(f"student{m}", backend.student(m)["password"])
    assert [e["outcome"] for e in runs] == ["done", "done"]
    for run in runs:  # each ran every step itself, one after the other under the lock
        assert "deliver_notebooks,verify_home ok" in run["detail"]
        assert f"student{m}: hub_start_server ok" in run["detail"]


def test_send_test_and_doctor_on_the_real_mail_path(backend):
    n = LOW + 38
    r = invoke(["--config", str(backend.config), "send-test", "create", "WKSHP-Python101",
                str(n), "--customer", "4717"])
    assert r.code == 0, r.err
    backend.wait("the test order", lambda: backend.fe.state.customers[4717]["active"])
    assert password_works(f"student{n}", backend.student(n)["password"])
    r = invoke(["--config", str(backend.config), "doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(r.out)}
    for name in ("configuration", "state_dir", "content", "accounts", "procmail",
                 "frontend", "jupyterhub"):
        assert checks[name]["status"] == "ok", checks[name]


def test_intake_policy_on_the_real_mail_path(backend):
    """Refused senders bounce, unsigned and replayed orders run nothing."""
    from wod_backend.order import Action, Order
    from wod_backend.intake.policy import sign

    original = backend.config.read_text()
    secret = backend.root / "secrets" / "intake.secret"
    secret.write_text("e2e-shared-secret\n")
    secret.chmod(0o600)
    be = pwd.getpwnam(BACKEND_USER)
    os.chown(secret, be.pw_uid, be.pw_gid)
    backend.config.write_text(original.replace(
        "mail: {backend_user:", "mail: {sender: wod-api@localhost, backend_user:") +
        f"intake: {{allowed_senders: [wod-api@localhost], allowed_relays: [127.0.0.1],"
        f" secret_file: {secret}, refused: bounce}}\n")
    try:
        n = LOW + 37
        refused_before = len([e for e in backend.history() if e["outcome"] == "refused"])

        def refused(phrase):
            return lambda: any(e["outcome"] == "refused" and phrase in (e["reason"] or "")
                               for e in backend.history())

        backend.smtp_send(f"PURGE {n} 4718", "WKSHP-Python101")  # MAIL FROM admin@
        backend.wait("sender refused", refused("envelope sender 'admin@localhost'"))
        backend.wait("bounced", lambda: "status=bounced" in backend.postfix.log())
        backend.frontend_send(f"CREATE {n} 4718", "WKSHP-Python101")  # unsigned
        backend.wait("unsigned refused", refused("unsigned order"))
        assert not backend.student(n)["password"], json.dumps(backend.history()[:4], indent=1)
        signed_before = int(time.time())  # send-test signs at this second or later
        r = invoke(["--config", str(backend.config), "send-test", "create",
                    "WKSHP-Python101", str(n), "--customer", "4718"])
        assert r.code == 0, r.err
        backend.wait("signed order done", lambda: backend.student(n)["password"])
        first_password = backend.student(n)["password"]
        # Another second than send-test's: the same order signed in the same second is
        # the same signature, which would make replay-1 a replay already (a fixed
        # "now - 5" met send-test's second when its order took 5 s).
        header = sign("e2e-shared-secret", Order(Action.CREATE, (n,), "4718",
                                                 "WKSHP-Python101"), signed_before - 1)
        for mid in ("<replay-1@e2e>", "<replay-2@e2e>"):
            msg = (f"From: wod-api@localhost\nMessage-ID: {mid}\nX-WoD-Signature: {header}\n"
                   f"Subject: CREATE {n} 4718\n\nWKSHP-Python101\n")
            with smtplib.SMTP("127.0.0.1", 25, timeout=30) as smtp:
                smtp.sendmail("wod-api@localhost", [f"{BACKEND_USER}@localhost"],
                              msg.encode())
        backend.wait("replay refused", refused("signature already used"))

        def replays():
            return sorted(e["outcome"] for e in backend.history()
                          if e["message_id"] in ("<replay-1@e2e>", "<replay-2@e2e>"))

        backend.wait("one run, one refusal", lambda: replays() == ["done", "refused"])
        assert backend.student(n)["password"] != first_password  # the first one ran
        assert len([e for e in backend.history() if e["outcome"] == "refused"]) == \
            refused_before + 3
    finally:
        backend.config.write_text(original)
