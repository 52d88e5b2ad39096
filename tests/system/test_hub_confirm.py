"""No order waits for the hub: hub calls confirmed in the background, against a real
JupyterHub whose single-user command the test slows down or breaks per student.

`fail-USER` in the control folder makes the hub's pre-spawn hook refuse that user's
spawn (it fails after the start call answered 202: the hub runs with
`slow_spawn_timeout` 0, as the managed hub does with 1 s), `slow-USER` holds the
single-user server's start that many seconds, else it is JupyterHub's mocksu. The
frontend is the contract server; orders run through the real CLI, in-process and as
processes.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from support import jupyterhub
from support.cli import invoke, run_wod
from support.content import make_workshop
from support.frontend import FrontendServer
from support.waiting import wait_for
from wod_backend.state.journal import Journal
from wod_backend.state.outbox import Outbox

pytestmark = pytest.mark.skipif(shutil.which("configurable-http-proxy") is None,
                                reason="needs configurable-http-proxy")

WRAPPER = """#!/bin/sh
c={control}
[ -e "$c/slow-$JUPYTERHUB_USER" ] && sleep "$(cat "$c/slow-$JUPYTERHUB_USER")"
exec {python} -m jupyterhub.tests.mocksu "$@"
"""
HUB_EXTRA = """
import asyncio, os
async def _refuse_some(spawner):
    await asyncio.sleep(0.3)
    if os.path.exists(f"{control}/fail-{{spawner.user.name}}"):
        raise RuntimeError("test hub refuses this spawn")
c.Spawner.pre_spawn_hook = _refuse_some
c.Spawner.cmd = ['/bin/sh', '{wrapper}']
c.JupyterHub.tornado_settings = {{'slow_spawn_timeout': 0}}
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("chub")
    control = root / "control"
    control.mkdir()
    wrapper = root / "singleuser.sh"
    wrapper.write_text(WRAPPER.format(control=control, python=sys.executable))
    wrapper.chmod(0o755)
    h = jupyterhub.start(root / "hub", extra=HUB_EXTRA.format(control=control,
                                                               wrapper=wrapper))
    h.control = control  # type: ignore[attr-defined]
    yield h
    h.stop()


@pytest.fixture
def fe():
    server = FrontendServer().start()
    server.add_students(range(1, 41))
    for cid in range(100, 140):
        server.add_customer(cid)
    server.add_workshop(1, "WKSHP-Hub")
    yield server
    server.stop()


def control(hub, kind: str, user: str, value: str = "") -> Path:
    path = hub.control / f"{kind}-{user}"
    path.write_text(value)
    return path


def configure(site, fe, hub, url: str | None = None, extra: str = "") -> None:
    for name, text in (("fe.pass", "mod-Secret1"), ("hub.token", hub.token)):
        (site.root / name).write_text(text + "\n")
        (site.root / name).chmod(0o600)
    base = site.config.read_text().split("# --")[0]
    site.config.write_text(base + f"""# --
frontend: {{url: '{fe.url}', username: moderator, password_file: {site.root}/fe.pass,
           timeout: 5}}
jupyterhub: {{url: '{url or hub.url}', token_file: {site.root}/hub.token, timeout: 5,
             spawn_wait: 60, spawn_attempts: 4}}
orders: {{cleanup_wait: 1}}
{extra}""")


@pytest.fixture
def hsite(site, fe, hub):
    make_workshop(site.public, "WKSHP-Hub")
    configure(site, fe, hub)
    yield site
    for path in hub.control.iterdir():
        path.unlink()
    for n in range(1, 41):
        hub.api("DELETE", f"users/student{n}/server")


def outbox(site) -> Outbox:
    return Outbox(Journal(site.root / "state").conn, site.root / "state")


def hub_items(site, user: str) -> list:
    return outbox(site).items(None, {f"hub:{user}"})




def order(site, action: str, n: int, customer: int) -> None:
    mail = f"Subject: {action} {n} {customer}\nMessage-ID: <{time.time_ns()}@t>\n\nWKSHP-Hub\n"
    r = invoke(["--config", str(site.config), "mail"], input=mail)
    assert r.code == 0, r.err


def status(site, n: int) -> dict:
    return json.loads(invoke(["--config", str(site.config), "status", str(n),
                              "--json"]).out)[0]


def test_a_slow_spawn_never_holds_the_order(hsite, fe, hub):
    control(hub, "slow", "student1", "4")
    order(hsite, "CREATE", 1, 100)
    # The order is over: the frontend has the password and the customer is active,
    # while the hub is still spawning the server.
    assert fe.state.students[1]["password"]
    assert fe.state.customers[100]["active"] is True
    assert not (hub.server("student1") or {}).get("ready")
    assert [i.status for i in hub_items(hsite, "student1")] == ["pending", "pending"]
    entry = json.loads(invoke(["--config", str(hsite.config), "history", "--limit", "1",
                               "--json"]).out)[0]
    assert entry["outcome"] == "done"
    wait_for("the server", lambda: (hub.server("student1") or {}).get("ready"))
    wait_for("the confirmation", lambda: [i.status for i in hub_items(
        hsite, "student1")] == ["sent", "sent"])
    detail = json.loads(invoke(["--config", str(hsite.config), "history", "--limit", "1",
                                "--json"]).out)[0]["detail"]
    assert "hub: start student1 confirmed" in detail
    assert status(hsite, 1)["hub"] == "running" and status(hsite, 1)["hub_call"] is None


def test_hub_calls_wait_while_other_orders_run(hsite, fe, hub):
    """A burst: the spawns wait until the orders still running are over (they would
    take the CPU from them), then go."""
    journal = Journal(hsite.root / "state")
    other = journal.record("mail", subject="CREATE 9 108", outcome="running")  # alive: us
    order(hsite, "CREATE", 4, 103)
    assert fe.state.students[4]["password"]
    time.sleep(2.5)
    assert hub.server("student4") is None or not hub.server("student4").get("ready")
    assert [i.status for i in hub_items(hsite, "student4")] == ["pending", "pending"]
    journal.update(other, outcome="done")
    wait_for("the server", lambda: (hub.server("student4") or {}).get("ready"))
    detail = json.loads(invoke(["--config", str(hsite.config), "history", "--limit", "1",
                                "--json"]).out)[0]["detail"]
    assert "hub: calls held" in detail and "while other orders ran" in detail
    assert "hub: start student4 confirmed" in detail


def test_a_failed_spawn_is_retried_and_surfaces_in_status(hsite, fe, hub):
    broken = control(hub, "fail", "student2")
    order(hsite, "CREATE", 2, 101)
    assert fe.state.students[2]["password"]
    # The confirmation tries three times, then leaves the start to `outbox flush`.
    wait_for("three attempts", lambda: [i.attempts for i in hub_items(
        hsite, "student2") if i.method == "start"] == [3], bound=90)
    start = [i for i in hub_items(hsite, "student2") if i.method == "start"][0]
    assert start.status == "pending"
    assert "spawn failed: Spawn failed: test hub refuses this spawn" in start.last_error
    row = status(hsite, 2)
    assert row["hub_call"].startswith("start retrying after 3 attempt(s): spawn failed")
    # The 4th attempt (spawn_attempts: 4) is the last: given up, shown as such.
    r = invoke(["--config", str(hsite.config), "outbox", "flush"])
    assert r.code == 0, r.err + r.out
    assert status(hsite, 2)["hub_call"].startswith("start given up after 4 attempt(s)")
    # The operator fixes the hub and sends it again: the server comes up.
    broken.unlink()
    r = invoke(["--config", str(hsite.config), "outbox", "flush", "--retry-dead"])
    assert r.code == 0, r.err + r.out
    assert (hub.server("student2") or {}).get("ready")
    assert status(hsite, 2)["hub_call"] is None and status(hsite, 2)["hub"] == "running"


def test_the_server_ends_in_the_state_of_the_last_order(hsite, fe, hub):
    control(hub, "slow", "student3", "3")
    order(hsite, "CREATE", 3, 102)
    order(hsite, "CLEANUP", 3, 102)  # while the CREATE's spawn is still under way
    assert fe.state.customers[102]["cleaned"] is True
    wait_for("nothing left to confirm", lambda: not [
        i for i in hub_items(hsite, "student3") if i.status == "pending"], bound=60)
    assert hub.wait_server("student3", ready=False, bound=30)
    methods = [(i.method, i.status) for i in hub_items(hsite, "student3")]
    assert methods[-1] == ("stop", "sent")
    assert ("start", "superseded") in methods or ("start", "sent") in methods
    assert status(hsite, 3)["hub"] in ("stopped", "no user")


class Silent:
    """A hub that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(50)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


def test_a_hanging_hub_neither_blocks_nor_loses_the_calls(hsite, fe, hub):
    silent = Silent()
    try:
        configure(hsite, fe, hub, url=silent.url)
        order(hsite, "CREATE", 4, 103)
        assert fe.state.students[4]["password"] and fe.state.customers[103]["active"]
        wait_for("the confirmation's attempts", lambda: [i.attempts for i in hub_items(
            hsite, "student4")] == [3, 0], bound=90)
    finally:
        silent.close()
    configure(hsite, fe, hub)  # the hub is back
    r = invoke(["--config", str(hsite.config), "outbox", "flush"])
    assert r.code == 0, r.err + r.out
    assert [i.status for i in hub_items(hsite, "student4")] == ["sent", "sent"]
    assert (hub.server("student4") or {}).get("ready")


def test_overlapping_orders_lose_and_duplicate_no_report(hsite, fe, hub):
    students = range(10, 16)
    for n in students:
        control(hub, "slow", f"student{n}", "1")
    failures: list[str] = []

    def three_orders(n: int) -> None:
        for action in ("CREATE", "CLEANUP", "CREATE"):
            mail = (f"Subject: {action} {n} {100 + n}\nMessage-ID: <{time.time_ns()}.{n}@t>"
                    f"\n\nWKSHP-Hub\n").encode()
            p = run_wod(["--config", str(hsite.config), "mail"], input=mail)
            if p.returncode != 0:
                failures.append(f"{n} {action}: {p.stderr.decode()}")

    threads = [threading.Thread(target=three_orders, args=(n,)) for n in students]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    wait_for("every hub call confirmed", lambda: not [
        i for n in students for i in hub_items(hsite, f"student{n}")
        if i.status == "pending"], bound=120)
    for n in students:
        passwords = [p for p in fe.puts_for(f"student/{n}") if "password" in p]
        assert len(passwords) == 3, (n, passwords)  # one per order, none twice
        assert fe.state.students[n]["password"] == passwords[-1]["password"]
        assert fe.state.customers[100 + n]["active"] is True
        assert (hub.server(f"student{n}") or {}).get("ready"), n
        items = hub_items(hsite, f"student{n}")
        assert {i.status for i in items} <= {"sent", "superseded"}
        assert [i.method for i in items if i.status == "sent"][-1] == "start"


def test_a_stop_is_not_held_while_other_orders_run(hsite, fe, hub):
    """Only spawns wait for a burst's orders: a CLEANUP's stop goes at once, however many
    other orders run (five CLEANUPs at once each waited for the other four)."""
    order(hsite, "CREATE", 6, 105)
    wait_for("the server", lambda: (hub.server("student6") or {}).get("ready"))
    journal = Journal(hsite.root / "state")
    other = journal.record("mail", subject="CREATE 9 108", outcome="running")  # alive: us
    try:
        order(hsite, "CLEANUP", 6, 105)
        wait_for("the stop", lambda: hub.server("student6") is None, bound=10)
        assert journal.active(time.time() - 60, exclude=-1)  # the other order still runs
        detail = json.loads(invoke(["--config", str(hsite.config), "history", "--limit",
                                    "1", "--json"]).out)[0]["detail"]
        assert "calls held" not in detail
        wait_for("the confirmation", lambda: "hub: stop student6 confirmed" in json.loads(
            invoke(["--config", str(hsite.config), "history", "--limit", "1",
                    "--json"]).out)[0]["detail"])
    finally:
        journal.update(other, outcome="done")
