"""The frontend client and the durable outbox, against a local server implementing the
frontend's contract (tokens that expire, an outage switch, slow answers, hangs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from support.configs import edit_config
from support.cli import WOD, invoke
from support.content import make_workshop
from support.frontend import FrontendServer
from wod_backend import config as configmod
from wod_backend.config import Frontend as FrontendCfg
from wod_backend.remote.frontend import Frontend, clean_fields
from wod_backend.remote.http import HttpError


@pytest.fixture
def fe():
    server = FrontendServer().start()
    server.add_students(range(1, 200))
    yield server
    server.state.outage = False
    server.stop()


def secret_file(path, text):
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def fe_cfg(fe, tmp_path, password="mod-Secret1", timeout=2.0) -> FrontendCfg:
    return FrontendCfg(url=fe.url, username="moderator", timeout=timeout,
                       password_file=secret_file(tmp_path / "fe.pass", password))


@pytest.fixture
def fsite(site, fe):
    """The `site` configuration with this frontend (base_id 100: dbid = N + 100)."""
    pw = secret_file(site.root / "fe.pass", "mod-Secret1")
    edit_config(site.config, {
        "students": {"base_id": 100}, "orders": {"cleanup_wait": 1},
        "frontend": {"url": fe.url, "username": "moderator", "password_file": str(pw),
                     "timeout": 2}})
    make_workshop(site.public, "WKSHP-Web", "name: Web\nreset: false\n")
    fe.add_workshop(7, "WKSHP-Web")
    return site


def test_login_and_relogin_when_the_token_expires(fe, tmp_path):
    fe.state.token_ttl = 0.5
    fe.add_customer(5)
    client = Frontend(fe_cfg(fe, tmp_path), retry_delays=())
    client.put("customer/5", {"active": True})
    time.sleep(0.7)
    client.put("customer/5", {"active": False})  # 401 -> a new login, then it works
    assert fe.state.logins == 2
    assert fe.state.customers[5]["active"] is False


def test_wrong_password_and_unknown_id_are_permanent(fe, tmp_path):
    with pytest.raises(HttpError) as info:
        Frontend(fe_cfg(fe, tmp_path, "wrong"), retry_delays=()).login()
    assert info.value.status == 401 and not info.value.temporary
    with pytest.raises(HttpError) as info:
        Frontend(fe_cfg(fe, tmp_path), retry_delays=()).put("customer/999", {"active": True})
    assert info.value.status == 400 and not info.value.temporary


def test_server_hangs_on_unclean_values_and_the_client_never_sends_them(fe, tmp_path):
    fe.add_customer(6)
    client = Frontend(fe_cfg(fe, tmp_path, timeout=1), retry_delays=())
    started = time.monotonic()
    with pytest.raises(HttpError, match="no answer within 1s"):
        client.call("PUT", "customer/6", {"completionPercentage": 57.5})  # raw, unclean
    assert time.monotonic() - started < 5
    for bad in ({"completionPercentage": 57.5}, {"active": None}, {"password": ""},
                {"completionPercentage": "57"}, {"active": "yes"}):
        with pytest.raises(ValueError):
            clean_fields(bad)
    assert clean_fields({"completionPercentage": 140, "active": False}) == {
        "completionPercentage": 100, "active": False}


def test_outage_is_retried_then_temporary(fe, tmp_path):
    fe.state.outage = True
    client = Frontend(fe_cfg(fe, tmp_path), retry_delays=(0.05, 0.05))
    with pytest.raises(HttpError) as info:
        client.put("student/3", {"assigned": False})
    assert info.value.temporary


def test_create_during_outage_queues_then_flush_delivers_in_order(fsite, fe):
    fe.add_customer(4711)
    r = invoke(["--config", str(fsite.config), "create", "WKSHP-Web", "12",
                "--customer", "4711", "--json"])
    assert r.code == 0, r.err
    first_password = None
    fe.state.outage = True
    r = invoke(["--config", str(fsite.config), "create", "WKSHP-Web", "12",
                "--customer", "4711", "--json"])
    assert r.code == 0, r.err
    assert json.loads(r.out)["outcome"] == "done, reports pending"
    first_password = fe.state.students[112]["password"]
    r = invoke(["--config", str(fsite.config), "cleanup", "WKSHP-Web", "12",
                "--customer", "4711"])
    assert r.code == 0
    queued = json.loads(invoke(["--config", str(fsite.config), "outbox", "list",
                                "--json"]).out)
    calls = [(q["call"], q["body"]) for q in queued]
    assert ("PUT student/112", {"password": "***"}) in calls  # masked in listings
    assert calls.index(("PUT customer/4711", {"active": True})) < \
        calls.index(("PUT customer/4711", {"cleaned": True}))
    hist = json.loads(invoke(["--config", str(fsite.config), "history", "--json"]).out)
    assert hist[0]["outcome"] == "done, reports pending"
    r = invoke(["--config", str(fsite.config), "outbox", "flush"])
    assert r.code == 75  # still down: nothing lost, cron tries again
    fe.state.outage = False
    r = invoke(["--config", str(fsite.config), "outbox", "flush", "--json"])
    assert r.code == 0, r.out
    assert json.loads(r.out)["failed"] == []
    customer = fe.state.customers[4711]
    assert customer["active"] is True and customer["cleaned"] is True
    assert customer["completionPercentage"] == 0
    assert fe.state.students[112]["assigned"] is False
    assert fe.state.students[112]["password"] != first_password
    # the order of arrival per customer is the order of the orders
    bodies = fe.puts_for("customer/4711")
    assert bodies.index({"active": True}, 1) < bodies.index({"cleaned": True})
    # delivered passwords are gone from the outbox
    items = json.loads(invoke(["--config", str(fsite.config), "outbox", "list", "--all",
                               "--json"]).out)
    db = (fsite.root / "state" / "journal.db").read_bytes()
    assert fe.state.students[112]["password"].encode() not in db
    assert all(i["status"] == "sent" for i in items)


def test_state_never_goes_backwards(fsite, fe):
    fe.add_customer(9)
    from wod_backend.state import journal as jr
    from wod_backend.execution.reporting import make_sender
    from wod_backend.state.outbox import Outbox

    cfg = configmod.load(str(fsite.config))
    outbox = Outbox(jr.Journal(cfg.state_dir).conn, cfg.state_dir)
    fe.state.outage = True
    send = make_sender(cfg)
    outbox.enqueue(1, "frontend", "customer:9", "PUT", "customer/9", {"active": True})
    assert outbox.flush(send).failed
    outbox.enqueue(2, "frontend", "customer:9", "PUT", "customer/9", {"active": False})
    fe.state.outage = False
    report = outbox.flush(send)
    assert len(report.sent) == 2
    assert fe.puts_for("customer/9") == [{"active": True}, {"active": False}]
    assert fe.state.customers[9]["active"] is False


def test_kill_during_flush_loses_nothing(fsite, fe):
    """kill -9 in the middle of a flush: the next flush completes; a repeat is harmless."""
    from wod_backend.state import journal as jr
    from wod_backend.state.outbox import Outbox

    cfg = configmod.load(str(fsite.config))
    outbox = Outbox(jr.Journal(cfg.state_dir).conn, cfg.state_dir)
    for n in range(1, 21):
        outbox.enqueue(1, "frontend", f"student:{n}", "PUT", f"student/{n}",
                       {"assigned": False})
    fe.state.delay = 0.2
    proc = subprocess.Popen([WOD, "--config", str(fsite.config), "outbox", "flush"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while len(fe.state.puts) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sent_before = len(fe.state.puts)
    assert 5 <= sent_before < 20
    fe.state.delay = 0
    r = invoke(["--config", str(fsite.config), "outbox", "flush", "--json"])
    assert r.code == 0
    assert all(fe.state.students[n]["assigned"] is False for n in range(1, 21))
    per_student = [len(fe.puts_for(f"student/{n}")) for n in range(1, 21)]
    assert min(per_student) == 1 and max(per_student) <= 2  # at most the in-flight one twice
    assert sum(per_student) <= 21
    assert outbox.items("pending") == []


def test_flags_from_the_frontend_win(fsite, fe):
    fe.state.workshops[7]["reset"] = True
    fsite.hook(fsite.hooks_public, "scripts/reset-WKSHP-Web.sh", "true\n")
    fe.add_customer(3, cleaned=True)
    r = invoke(["--config", str(fsite.config), "reset", "WKSHP-Web", "3", "--customer", "3"])
    assert r.code == 0, r.err + r.out  # wod.yml says reset: false, the frontend true
    hist = json.loads(invoke(["--config", str(fsite.config), "history", "--json"]).out)[0]
    assert "workshop flags from frontend" in hist["detail"]


def test_frontend_down_and_cache_stale_runs_from_wod_yml(fsite, fe):
    """The frontend is down and the cached workshop list is stale: the order is planned
    from wod.yml, exits 0 within a second, and its reports wait in the outbox."""
    from wod_backend.state import journal as jr
    from wod_backend.state.outbox import Outbox

    fe.add_customer(31)
    r = invoke(["--config", str(fsite.config), "create", "WKSHP-Web", "3", "--customer", "31"])
    assert r.code == 0, r.err  # fills the cache
    cache = fsite.root / "state" / "frontend-workshops.json"
    os.utime(cache, (time.time() - 3600, time.time() - 3600))
    fe.state.outage = True
    started = time.monotonic()
    r = invoke(["--config", str(fsite.config), "create", "WKSHP-Web", "4", "--customer", "31"])
    elapsed = time.monotonic() - started
    assert r.code == 0, r.err
    assert elapsed < 1.0
    hist = json.loads(invoke(["--config", str(fsite.config), "history", "--json"]).out)[0]
    assert hist["outcome"] == "done, reports pending"
    assert "workshop flags from wod.yml (frontend unreachable" in hist["detail"]
    assert (fsite.root / "homes" / "student4" / "WKSHP-Web" / "0-ReadMeFirst.ipynb").is_file()
    cfg = configmod.load(str(fsite.config))
    pending = Outbox(jr.Journal(cfg.state_dir).conn, cfg.state_dir).items("pending")
    assert [(i.path, i.body) for i in pending] == [
        ("student/104", {"password": pending[0].body["password"]}),
        ("customer/31", {"active": True})]
    fe.state.outage = False
    r = invoke(["--config", str(fsite.config), "outbox", "flush"])
    assert r.code == 0
    assert fe.state.students[104]["password"] == pending[0].body["password"]
    assert fe.state.customers[31]["active"] is True


def test_frontend_down_without_any_cache_still_runs(fsite, fe):
    fe.state.outage = True
    started = time.monotonic()
    r = invoke(["--config", str(fsite.config), "create", "WKSHP-Web", "3"])
    assert r.code == 0 and time.monotonic() - started < 1.0, r.err
    assert (fsite.root / "homes" / "student3" / "WKSHP-Web").is_dir()


def test_admin_orders_report_no_customer(fsite, fe):
    """Customer 0 (admin tools, send-test) is no frontend customer: nothing is reported
    about it and nothing goes dead in the outbox."""
    from wod_backend.state import journal as jr
    from wod_backend.state.outbox import Outbox

    r = invoke(["--config", str(fsite.config), "create", "WKSHP-Web", "5"])
    assert r.code == 0, r.err
    r = invoke(["--config", str(fsite.config), "cleanup", "WKSHP-Web", "5"])
    assert r.code == 0, r.err
    assert not any(p.startswith("customer/") for _t, p, _b in fe.state.puts)
    cfg = configmod.load(str(fsite.config))
    items = Outbox(jr.Journal(cfg.state_dir).conn, cfg.state_dir).items(None)
    assert {i.status for i in items} == {"sent"}
    assert sorted({i.path for i in items}) == ["student/105"]
    hist = json.loads(invoke(["--config", str(fsite.config), "history", "--json"]).out)
    assert [h["outcome"] for h in hist[:2]] == ["done", "done"]


def test_cleanup_of_a_reset_workshop_keeps_the_student_assigned(fsite, fe):
    fe.state.workshops[7]["reset"] = True
    fsite.hook(fsite.hooks_public, "scripts/reset-WKSHP-Web.sh", "true\n")
    fe.add_customer(61)
    fe.state.students[106]["assigned"] = False  # whatever the frontend believed
    r = invoke(["--config", str(fsite.config), "cleanup", "WKSHP-Web", "6", "--customer", "61"])
    assert r.code == 0, r.err
    assert {"assigned": True} in fe.puts_for("student/106")
    assert fe.state.students[106]["assigned"] is True
    assert fe.state.customers[61]["active"] is False and fe.state.customers[61]["cleaned"]


def test_frontend_rows_in_their_real_forms(fsite, fe):
    """Strings for booleans and numbers; compile as a string column that may only
    narrow what wod.yml lists; range and appliances stay wod.yml's."""
    (fsite.public / "WKSHP-Web" / "wod.yml").write_text(
        "%YAML 1.1\n---\nname: Web\nreset: false\ncompile: [ok.sh]\nrange: [1, 40]\n")
    fsite.hook(fsite.hooks_public, "scripts/ok.sh", "#!/bin/bash\necho ok\n")
    fsite.hook(fsite.hooks_public, "scripts/reset-WKSHP-Web.sh", "true\n")
    fe.state.workshops[7].update(reset="true", ldap="false", capacity="12",
                                 compile="ok.sh,evil.sh", range=[500, 501],
                                 monoappliance="true")
    r = invoke(["--config", str(fsite.config), "create", "WKSHP-Web", "7", "--dry-run",
                "--json"])
    assert r.code == 0, r.err
    steps = [s for s in json.loads(r.out)["steps"][0]["steps"]]
    assert {"name": "compile", "detail": "ok.sh"} in steps
    assert "frontend asks to compile evil.sh, which wod.yml does not list: ignored" in r.err
    fe.state.workshops[7]["compile"] = ""
    os.unlink(fsite.root / "state" / "frontend-workshops.json") \
        if (fsite.root / "state" / "frontend-workshops.json").exists() else None
    r = invoke(["--config", str(fsite.config), "create", "WKSHP-Web", "7", "--dry-run",
                "--json"])
    assert r.code == 0, r.err
    assert "compile" not in [s["name"] for s in json.loads(r.out)["steps"][0]["steps"]]
    fe.add_customer(71, cleaned="true")
    r = invoke(["--config", str(fsite.config), "reset", "WKSHP-Web", "7", "--customer", "71"])
    assert r.code == 0, r.err  # reset "true" from the row, cleaned "true" from the row


def test_status_shows_whole_outcomes(fsite, fe):
    fe.state.outage = True
    invoke(["--config", str(fsite.config), "create", "WKSHP-Web", "8", "--customer", "0"])
    out = invoke(["--config", str(fsite.config), "status", "8"]).out
    assert "done, reports pending" in out


def test_workshop_unknown_to_frontend(fsite, fe):
    make_workshop(fsite.public, "WKSHP-LocalOnly")
    r = invoke(["--config", str(fsite.config), "create", "WKSHP-LocalOnly", "3"])
    assert r.code == 65 and "unknown to the frontend" in r.err


def test_reset_waits_for_cleanup_then_defers(fsite, fe):
    fe.state.workshops[7]["reset"] = True
    fsite.hook(fsite.hooks_public, "scripts/reset-WKSHP-Web.sh", "true\n")
    fe.add_customer(44, cleaned=False)
    started = time.monotonic()
    r = invoke(["--config", str(fsite.config), "reset", "WKSHP-Web", "4", "--customer", "44"])
    assert r.code == 75 and "customer 44 not cleaned yet" in r.err
    assert time.monotonic() - started < 10
    r = invoke(["--config", str(fsite.config), "cleanup", "WKSHP-Web", "4",
                "--customer", "44"])
    assert r.code == 0, r.err
    assert fe.state.customers[44]["active"] is False  # reset workshop: kept, inactive
    assert fe.state.students[104]["assigned"] is True
    r = invoke(["--config", str(fsite.config), "reset", "WKSHP-Web", "4", "--customer", "44"])
    assert r.code == 0, r.err
    assert fe.state.students[104]["assigned"] is False


def test_purge_deferred_while_a_cleanup_runs(fsite, fe):
    from wod_backend.state import journal as jr

    cfg = configmod.load(str(fsite.config))
    journal = jr.Journal(cfg.state_dir)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        entry = journal.record("mail", order={"action": "CLEANUP", "students": [8],
                                              "customer": "80", "workshop": "WKSHP-Web"},
                               outcome=jr.RUNNING)
        journal.conn.execute("UPDATE orders SET pid=? WHERE id=?", (sleeper.pid, entry))
        fe.add_customer(81, cleaned=True)
        r = invoke(["--config", str(fsite.config), "purge", "WKSHP-Web", "8",
                    "--customer", "81"])
        assert r.code == 75 and f"CLEANUP order {entry} still running" in r.err
    finally:
        sleeper.kill()
        sleeper.wait()
    r = invoke(["--config", str(fsite.config), "purge", "WKSHP-Web", "8", "--customer", "81"])
    assert r.code == 0, r.err  # the CLEANUP's process is gone: no longer blocks
