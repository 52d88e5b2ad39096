"""The CLI, in-process and as real processes: dry runs, JSON, exit codes, history."""

from __future__ import annotations

import json

import pytest

from support.cli import DATA, invoke, run_wod

SAMPLES = DATA / "mails" / "samples"


def test_version_as_a_process():
    p = run_wod(["--version"])
    assert p.returncode == 0 and p.stdout.decode().startswith("wod-backend, version ")


def test_mail_dry_run_json_touches_nothing(demo, demo_cfg):
    r = invoke(["--config", str(demo), "mail", "--dry-run", "--json"],
               input=(SAMPLES / "frontend-create.eml").read_bytes())
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert {k: out[k] for k in ("action", "students", "customer", "workshop", "mode")} == {
        "action": "CREATE", "students": [12], "customer": "4711",
        "workshop": "WKSHP-API101", "mode": "WKSHP"}
    names = [s["name"] for s in out["steps"][0]["steps"]]
    assert names[:3] == ["new_password", "render_notebooks", "wipe_home"]
    assert "deliver_notebooks" in names
    assert out["outcome"] == "planned"
    assert not (demo_cfg.students.home_root / "student12").exists()
    assert not (demo_cfg.state_dir / "journal.db").exists()


def test_cli_dry_run_range_text(demo):
    r = invoke(["--config", str(demo), "reset", "WKSHP-Ansible101", "3-5", "--dry-run"])
    assert r.code == 0, r.err
    assert "RESET WKSHP-Ansible101" in r.out
    for n in (3, 4, 5):
        assert f"student{n} (home " in r.out
    assert "hook_reset" in r.out


@pytest.mark.parametrize("args, code, phrase", [
    (["create", "WKSHP-API101", "0"], 65, "student 0 out of range"),
    (["create", "WKSHP-API101", "5-2"], 65, "min 5 > max 2"),
    (["create", "../etc", "5"], 65, "bad workshop name"),
    (["create", "WKSHP-Nope", "5"], 65, "unknown workshop WKSHP-Nope"),
    (["create", "WKSHP-API101", "5", "--customer", "x1"], 65, "bad customer id"),
    (["reset", "WKSHP-API101", "5"], 65, "not flagged reset"),
    (["create", "WKSHP-API101"], 64, "usage:"),
    (["explode"], 64, "usage:"),
])
def test_cli_refusals(demo, demo_cfg, args, code, phrase):
    r = invoke(["--config", str(demo), *args])
    assert r.code == code
    assert phrase in r.err and len(r.err.strip().splitlines()) == 1
    assert not any(demo_cfg.students.home_root.iterdir())


def test_refused_mail_is_journaled_as_a_process(demo):
    p = run_wod(["--config", str(demo), "mail"],
                input=(SAMPLES / "broken-sender.eml").read_bytes())
    assert p.returncode == 65
    assert p.stderr.decode().count("\n") == 1 and b"[object" in p.stderr
    r = invoke(["--config", str(demo), "history", "--json"])
    entry = json.loads(r.out)[0]
    assert entry["outcome"] == "refused" and "bad student number" in entry["reason"]
    assert entry["subject"] == "RESET [object Promise] 4713"
    assert entry["source"] == "mail"


def test_create_by_mail_process_end_to_end(demo, demo_cfg):
    p = run_wod(["--config", str(demo), "mail", "--json"],
                input=(SAMPLES / "admin-test-challenge.eml").read_bytes())
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["outcome"] == "done" and out["mode"] == "CHLG"
    nb = demo_cfg.students.home_root / "student3" / "CHLG-Python101" / "0-ReadMeFirst.ipynb"
    text = "".join(json.loads(nb.read_text())["cells"][0]["source"])
    assert "Python 101 challenge" in text and "student 3" in text
    hist = json.loads(invoke(["--config", str(demo), "history", "--json"]).out)[0]
    assert hist["message_id"] == "<test-3@backend.example.org>"
    assert "student3: deliver_notebooks ok" in hist["detail"]
    assert hist["duration"] > 0


def test_internal_error_is_one_line_and_exit_70(demo, monkeypatch):
    from wod_backend.planning import plan

    def boom(*a, **k):
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(plan, "student_steps", boom)
    r = invoke(["--config", str(demo), "create", "WKSHP-API101", "3", "--dry-run"])
    assert r.code == 70
    assert r.err.strip().splitlines() == [
        "wod-backend: internal error: RuntimeError: kaboom (traceback in the log)"]
    log = (demo.parent / "state" / "wod-backend.log").read_text()
    assert "Traceback" in log and "kaboom" in log


def test_workshops_list_and_check(demo):
    r = invoke(["--config", str(demo), "workshops", "list", "--json"])
    rows = {row["folder"]: row for row in json.loads(r.out)}
    assert set(rows) == {"WKSHP-API101", "WKSHP-Ansible101", "WKSHP-Python101"}
    assert rows["WKSHP-Ansible101"]["reset"] is True
    r = invoke(["--config", str(demo), "workshops", "check"])
    assert r.code == 0, r.out
    assert r.out.strip() == "no problems found"
