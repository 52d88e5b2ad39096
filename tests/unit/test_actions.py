"""The actions as plans and as runs: step lists per action, batches, locks, duplicates,
a killed order and its retry, status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from support.configs import edit_config
from support.cli import WOD, invoke, run_wod
from support.content import make_workshop
from wod_backend.planning.catalog import Catalog
from wod_backend.intake.pipeline import order_from_args
from wod_backend.planning.plan import make_plan


@pytest.fixture
def full_site(site):
    """The site with a frontend, a hub and LDAP configured (never contacted here)."""
    secret = site.root / "s"
    secret.write_text("x")
    secret.chmod(0o600)
    site.config.write_text(site.config.read_text() + f"""
frontend: {{url: 'http://127.0.0.1:9/api', username: m, password_file: {secret}}}
jupyterhub: {{url: 'http://127.0.0.1:9', token_file: {secret}}}
ldap: {{uri: 'ldap://127.0.0.1:9', bind_dn: cn=a, password_file: {secret}, people_dn: ou=p}}
""")
    make_workshop(site.public, "WKSHP-Plain", "name: p\n")
    make_workshop(site.public, "WKSHP-Resettable", "name: r\nreset: true\nldap: true\n")
    site.hook(site.hooks_public, "scripts/reset-WKSHP-Resettable.sh", "true\n")
    return site


def steps(site, action, workshop, students="3"):
    cfg = site.load()
    order = order_from_args(cfg, action, workshop, students, "42")
    plan = make_plan(cfg, Catalog(cfg), order)
    return [s.name for s in plan.students[0].steps], [s.name for s in plan.final_steps]


PASSWORD = ["new_password", "report_password"]
EVICT = ["report_student_free", "wipe_home", "verify_home"]


@pytest.mark.parametrize("action, workshop, expected", [
    ("CREATE", "WKSHP-Plain",
     ["new_password", "render_notebooks", "report_password", "wipe_home",
      "restore_skeleton", "ssh_key", "deliver_notebooks", "verify_home",
      "report_customer_active", "hub_ensure_user_server", "hub_start_server"]),
    ("CREATE", "WKSHP-Resettable",
     ["new_password", "render_notebooks", "set_ldap_password", "report_password",
      "wipe_home", "restore_skeleton", "ssh_key", "deliver_notebooks", "verify_home",
      "report_customer_active", "hub_ensure_user_server", "hub_start_server"]),
    ("CLEANUP", "WKSHP-Plain",
     ["hub_stop_server", "measure_completion", "report_completion", *PASSWORD, *EVICT,
      "report_customer_cleaned"]),
    ("CLEANUP", "WKSHP-Resettable",
     ["hub_stop_server", "measure_completion", "report_completion", "new_password",
      "set_ldap_password", "report_password", "report_student_assigned",
      "report_customer_inactive", "report_customer_cleaned"]),
    ("RESET", "WKSHP-Resettable",
     ["new_password", "set_ldap_password", "report_password", "hook_reset", *EVICT]),
    ("PURGE", "WKSHP-Plain", ["hub_stop_server", *PASSWORD, *EVICT]),
])
def test_plan_of_each_action_follows_the_contract(full_site, action, workshop, expected):
    names, final = steps(full_site, action, workshop)
    assert names == expected
    assert final == []


def test_range_reset_gives_back_the_capacity(full_site):
    names, final = steps(full_site, "RESET", "WKSHP-Resettable", "3-6")
    assert final == ["report_capacity"]


def test_accounts_add_account_steps(full_site):
    edit_config(full_site.config, {"students": {"manage_accounts": True}})
    names, _ = steps(full_site, "PURGE", "WKSHP-Plain")
    # the processes end before the wipe: one left running would write after it
    assert names == ["hub_stop_server", "new_password", "set_linux_password",
                     "report_password", "report_student_free", "kill_processes", "wipe_home",
                     "verify_home"]
    names, _ = steps(full_site, "CREATE", "WKSHP-Plain")
    assert names[:7] == ["ensure_account", "new_password", "render_notebooks",
                         "set_linux_password", "report_password", "kill_processes",
                         "wipe_home"]


def test_batch_isolates_each_student_and_summarizes(site):
    make_workshop(site.public, "WKSHP-Batch", "name: b\nreset: true\n")
    site.hook(site.hooks_public, "scripts/reset-WKSHP-Batch.sh",
              '[ "$WOD_STUDENT" = 3 ] && { echo "lab 3 is broken" >&2; exit 1; }\n'
              'touch "$WOD_STATE_DIR/reset-$WOD_STUDENT"\n')
    r = invoke(["--config", str(site.config), "reset", "WKSHP-Batch", "1-5"])
    assert r.code == 70
    assert "student3      failed    student3: hook_reset:" in r.out
    assert "lab 3 is broken" in r.out and "4 done, 1 failed" in r.out
    assert sorted(p.name for p in (site.root / "state").glob("reset-*")) == [
        "reset-1", "reset-2", "reset-4", "reset-5"]
    assert r.err.count("\r") == 0  # no progress bar when stderr is not a terminal
    out = json.loads(invoke(["--config", str(site.config), "reset", "WKSHP-Batch", "1-5",
                             "--json"]).out)
    assert [s["outcome"] for s in out["results"]] == ["done", "done", "failed", "done",
                                                      "done"]


def slow_site(site, seconds=30):
    make_workshop(site.public, "WKSHP-Slow", "name: s\n")
    site.hook(site.hooks_public, "scripts/create-WKSHP-Slow.sh",
              f'touch "$WOD_STATE_DIR/hook-started-$WOD_STUDENT"\n'
              f'[ "$WOD_STUDENT" = 9 ] || sleep {seconds}\n')
    edit_config(site.config, {"hooks": {"timeout": 120}, "orders": {"lock_wait": 1}})


def wait_for(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_killed_create_shows_in_history_and_retry_completes_it(site):
    slow_site(site)
    proc = subprocess.Popen([WOD, "--config", str(site.config), "create", "WKSHP-Slow", "7"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    wait_for(site.root / "state" / "hook-started-7")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    entry = json.loads(invoke(["--config", str(site.config), "history", "--json"]).out)[0]
    assert entry["outcome"] == "interrupted"
    assert "student7: new_password ok" in entry["detail"]
    # the cause is fixed: the hook no longer hangs
    site.hook(site.hooks_public, "scripts/create-WKSHP-Slow.sh", "true\n")
    r = invoke(["--config", str(site.config), "retry", str(entry["id"]), "--yes", "--json"])
    assert r.code == 0, r.out
    out = json.loads(r.out)
    assert out["outcome"] == "done"
    again = json.loads(invoke(["--config", str(site.config), "history", "--json"]).out)[0]
    assert again["retry_of"] == entry["id"] and again["source"] == "retry"
    assert (site.root / "homes/student7/WKSHP-Slow/0-ReadMeFirst.ipynb").is_file()


def test_same_student_waits_for_its_lock_then_75(site):
    slow_site(site, seconds=20)
    proc = subprocess.Popen([WOD, "--config", str(site.config), "create", "WKSHP-Slow", "8"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_for(site.root / "state" / "hook-started-8")
        r = invoke(["--config", str(site.config), "create", "WKSHP-Slow", "8"])
        assert r.code == 75 and "student8 is busy with another order (waited 1s)" in r.out
        other = invoke(["--config", str(site.config), "create", "WKSHP-Slow", "9"],)
        assert other.code == 0, other.out  # another student is not held up by the lock
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_same_message_without_message_id_runs_once(demo, demo_cfg):
    mail = b"Subject: CREATE 4 0\n\nWKSHP-API101\n"
    first = run_wod(["--config", str(demo), "mail"], input=mail)
    assert first.returncode == 0, first.stderr
    second = run_wod(["--config", str(demo), "mail", "--json"], input=mail)
    assert second.returncode == 0
    out = json.loads(second.stdout)
    assert out["outcome"] == "duplicate" and "executed once" in out["reason"]
    hist = json.loads(invoke(["--config", str(demo), "history", "--json"]).out)
    assert [e["outcome"] for e in hist[:2]] == ["duplicate", "done"]
    # outside the window the same text is a new order
    demo.write_text(demo.read_text() + "orders: {duplicate_window: 0}\n")
    third = run_wod(["--config", str(demo), "mail", "--json"], input=mail)
    assert json.loads(third.stdout)["outcome"] == "done"


def test_status_shows_assignment_and_last_order(demo):
    assert invoke(["--config", str(demo), "create", "WKSHP-Python101", "2",
                   "--customer", "5"]).code == 0
    assert invoke(["--config", str(demo), "create", "WKSHP-Ansible101", "3"]).code == 0
    assert invoke(["--config", str(demo), "cleanup", "WKSHP-Ansible101", "3"]).code == 0
    rows = {r["student"]: r for r in json.loads(
        invoke(["--config", str(demo), "status", "1-4", "--json"]).out)}
    assert rows[2]["state"] == "assigned" and rows[2]["workshop"] == "WKSHP-Python101"
    assert rows[2]["customer"] == "5" and rows[2]["last_action"] == "CREATE"
    assert rows[3]["state"] == "assigned"  # reset workshop after CLEANUP: until RESET
    assert rows[1]["state"] == "free" and rows[1]["last_order"] is None
    assert rows[4]["hub"] is None  # no hub configured
    text = invoke(["--config", str(demo), "status", "2"]).out
    assert "student2" in text and "assigned" in text


def test_doctor_reports_problems_with_fixes(demo, tmp_path):
    r = invoke(["--config", str(demo), "doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(r.out)}
    assert r.code == 0 and checks["content"]["status"] == "ok"
    demo.write_text(demo.read_text() + "mail: {backend_user: root}\n")
    r = invoke(["--config", str(demo), "doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(r.out)}
    assert r.code == 1 and checks["procmail"]["status"] == "FAIL"
    assert "procmailrc.example" in checks["procmail"]["fix"]


def test_send_test_composes_frontend_mails(demo):
    r = invoke(["--config", str(demo), "send-test", "create", "WKSHP-API101", "3-4",
                "--customer", "9", "--dry-run"])
    assert r.code == 0
    assert r.out.count("Subject: CREATE") == 2
    assert "Subject: CREATE 3 9\nWKSHP-API101" in r.out  # no blank line, as the frontend
    r = invoke(["--config", str(demo), "send-test", "reset", "WKSHP-Ansible101", "3-6",
                "--dry-run"])
    assert r.out.count("Subject: RESET 3,6 0") == 1
