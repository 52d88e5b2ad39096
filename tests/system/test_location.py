"""This host as a WoD location, made by `setup` alone (root, the real postfix, nft):
the unmodified frontend's orders through its port and the location's name, doctor's
probe, the frontend's rows checked, students unable to order, and two backends on one
host each owning their postfix files."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support.accounts import password_works
from support.cli import DATA, WOD
from support.setuphost import (DOMAIN, HIGH, LOW, USER, config_text, frontend_send,
                               postfix_restored, setup_host, wait_for, wod)
from wod_backend import config
from wod_backend.host import mailconf

PORT = 10025  # the original installer's WODPOSTPORT


def test_the_frontend_orders_through_its_port_and_the_locations_name():
    with setup_host(listen_port=PORT, relays=("127.0.0.1",), signed=False) as (root, cfg, fe):
        p = wod(cfg, "setup", "--yes")
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr
        assert (f"[ok  ] mail probe: a probe to {USER}+probe@{DOMAIN} on 127.0.0.1:{PORT} "
                f"reached the journal") in p.stdout
        assert f"[ok  ] location: row {DOMAIN} matches" in p.stdout
        assert f"[ok  ] mail path: orders to {USER}@{DOMAIN} on port {PORT}" in p.stdout
        # The probe changed nothing: journaled as a probe, no student, no report.
        history = json.loads(wod(cfg, "history", "--json").stdout)
        assert [(e["source"], e["outcome"], e["students"]) for e in history] == [
            ("probe", "probe", [])]
        assert fe.state.puts == []

        replies = frontend_send(PORT, f"{USER}@{DOMAIN}",
                                f"CREATE {LOW} 4711 ada@example.org", "WKSHP-API101")
        assert replies[-1].startswith("250"), replies
        wait_for("the password at the frontend",
                 lambda: fe.state.students[LOW]["password"], root)
        assert password_works(f"student{LOW}", fe.state.students[LOW]["password"])

        # Drift is reported, not silently kept.
        cfg.write_text(config_text(root, fe, listen_port=PORT + 1, relays=("127.0.0.1",),
                                   signed=False))
        p = wod(cfg, "setup", "--check")
        assert p.returncode == 2 and f"postfix: master.cf: {PORT + 1} inet n - y - - smtpd" \
            in p.stdout, p.stdout + p.stderr
        cfg.write_text(config_text(root, fe, listen_port=PORT, relays=("127.0.0.1",),
                                   signed=False))

        # The frontend's view of this location disagrees: doctor names it, with the fix.
        fe.state.locations[0]["basestdid"] = 100
        p = wod(cfg, "doctor")
        assert p.returncode == 1
        assert (f"[FAIL] location: row {DOMAIN}: basestdid is 100, students.base_id is 0\n"
                f"         fix: set the row to name={DOMAIN}, basestdid=0") in p.stdout


def _as_student(n: int, script: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["su", "-", f"student{n}", "-c", script], input=stdin,
                          capture_output=True, timeout=60)


CONNECT = """python3 -c '
import socket
for port in (25, {port}):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        print(port, "connected")
    except OSError as exc:
        print(port, type(exc).__name__)
'"""


def test_a_student_cannot_order_but_the_frontend_can():
    with setup_host(listen_port=PORT, relays=("127.0.0.1",), signed=False) as (root, cfg, fe):
        assert wod(cfg, "setup", "--yes").returncode == 0
        forged = f"From: wod-noreply@frontend\nSubject: CREATE {LOW + 1} 4711\nWKSHP-API101\n"
        p = _as_student(LOW, f"/usr/sbin/sendmail -f wod-noreply@frontend {USER}@localhost",
                        forged.encode())
        assert p.returncode != 0
        assert b"is not allowed to submit mail" in p.stderr, p.stderr
        p = _as_student(LOW, CONNECT.format(port=PORT))
        assert p.stdout.decode().split("\n")[:2] == ["25 ConnectionRefusedError",
                                                     f"{PORT} ConnectionRefusedError"], p
        # The frontend (root here, from 127.0.0.1) is not a student: its order is done.
        replies = frontend_send(PORT, f"{USER}@{DOMAIN}", f"CREATE {HIGH} 4711", "WKSHP-API101")
        assert replies[-1].startswith("250"), replies
        wait_for("the frontend's order done", lambda: fe.state.students[HIGH]["password"], root)
        assert fe.state.students[LOW + 1]["password"] == ""
        students = [e["students"] for e in json.loads(wod(cfg, "history", "--json").stdout)]
        assert [LOW + 1] not in students and [HIGH] in students
        # setup --check verifies the rule is loaded.
        subprocess.run(["nft", "delete", "table", "inet", f"wod_backend_{USER}"], check=True)
        p = wod(cfg, "setup", "--check")
        assert p.returncode == 2 and f"firewall: nft table inet wod_backend_{USER}:" in p.stdout
        assert wod(cfg, "setup", "--yes").returncode == 0
        p = _as_student(LOW, CONNECT.format(port=PORT))
        assert p.stdout.decode().startswith("25 ConnectionRefusedError"), p


def _backend(tmp: Path, user: str, relay: str) -> config.Config:
    path = tmp / f"{user}.yml"
    path.write_text(f"content: {{public: {DATA.parent.parent}/workshops-public}}\n"
                    f"state_dir: {tmp}/{user}\n"
                    f"mail: {{backend_user: {user}, domains: [{user}.example.test]}}\n"
                    f"intake: {{allowed_relays: [{relay}]}}\n")
    return config.load(str(path), host=False)


def _rcpt(source: str, rcpt: str) -> int:
    import smtplib

    with smtplib.SMTP("127.0.0.1", 25, timeout=30, source_address=(source, 0)) as smtp:
        smtp.ehlo()
        smtp.mail("api@frontend")
        code, _ = smtp.rcpt(rcpt)
        smtp.rset()
        return code


@pytest.fixture
def two_users():
    users = ("wodone", "wodtwo")
    for user in users:
        subprocess.run(["useradd", "--system", user], capture_output=True)
    try:
        with postfix_restored(users):
            yield users
    finally:
        for user in users:
            subprocess.run(["userdel", user], capture_output=True)


def test_two_backends_on_one_host_own_their_postfix_files(tmp_path, two_users):
    one = _backend(tmp_path, "wodone", "127.0.0.2")
    two = _backend(tmp_path, "wodtwo", "127.0.0.3")
    # postfix accepts a maillog_file only under /var (maillog_file_prefixes)
    subprocess.run(["postconf", "-e", "maillog_file=/var/tmp/wod-two-backends.maillog",
                    "inet_protocols=ipv4"], check=True)
    assert mailconf.ensure_postfix(one, True)
    assert mailconf.ensure_postfix(two, True)
    assert mailconf.ensure_postfix(one, True) == []  # converged: each keeps the other's
    for cfg in (one, two):
        assert mailconf.clients_file(cfg).exists() and mailconf.recipients_file(cfg).exists()
    check = subprocess.run(["postfix", "check"], capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    assert _rcpt("127.0.0.2", "wodone@wodone.example.test") == 250
    assert _rcpt("127.0.0.3", "wodtwo@wodtwo.example.test") == 250
    assert _rcpt("127.0.0.3", "wodone@wodone.example.test") == 554
    assert _rcpt("127.0.0.2", "wodtwo@wodtwo.example.test") == 554
    # Probes reach either backend from anywhere: they run nothing.
    assert _rcpt("127.0.0.4", "wodtwo+probe@wodtwo.example.test") == 250


def test_postfix_is_as_it_was_after_the_two_backends():
    """The fixture above restored main.cf and master.cf and removed the maps (a host left
    with main.cf naming removed maps answers 451 to every mail)."""
    main = Path("/etc/postfix/main.cf").read_text()
    assert "wod-backend-recipients-wodone" not in main
    assert not Path("/etc/postfix/wod-backend-recipients-wodone").exists()


def test_a_configuration_migrated_from_the_original_is_accepted_by_setup_check():
    home = DATA / "wod-install" / "home"
    out = Path(tempfile.mkdtemp(prefix="wod-migrated-", dir="/var/tmp"))
    out.chmod(0o755)
    try:
        p = subprocess.run([WOD, "config", "init", "--from-wod",
                            str(DATA / "wod-install" / "etc" / "wod.yml"),
                            "--group-vars", str(home / "wod-install/ansible/group_vars/all.yml"),
                            "--group-vars", str(home / "wod-backend/ansible/group_vars/all.yml"),
                            "--generated", str(home / "wod-private/ansible/generated/production"),
                            "--private-sh", str(home / "wod-private/scripts/wod-private.sh"),
                            str(out)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        p = wod(out / "config.yml", "setup", "--check")
        # Changes to make (the backend user, postfix on 10025...), but nothing refused.
        assert p.returncode == 2, p.stdout + p.stderr
        assert "backend user: wodmig" in p.stdout
        assert "postfix: master.cf: 10025 inet n - y - - smtpd" in p.stdout
        assert "wod-be1.example.org, notebooks1.example.org" in p.stdout  # mydestination
    finally:
        shutil.rmtree(out, ignore_errors=True)
