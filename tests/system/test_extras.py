"""What operators and participants get from the original backend, on a host made by
`setup` with the managed hub: per-student variables (an operator's vault-encrypted file)
reaching the notebook through the sudo helper; password guessing on the hub banned per
address (real logins from 127.0.0.2 and 127.0.0.3); the operator's report mailed
through the real postfix into a local mailbox, at once when red, daily, never twice
for one state; a student over the disk budget warned, then evicted."""

from __future__ import annotations

import json
import mailbox
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter

from support.cli import DATA
from support.configs import edit_config
from support.content import notebook
from support.setuphost import (DOMAIN, LOW, UID_BASE, USER, frontend_send, setup_host,
                               wait_for, wod)
from support.slapd import free_port

PORT = 10025
WORKSHOP = "WKSHP-Extra101"
MONITOR = "wodmon"  # the operator's local mailbox (schedule.report)
VAULT_PASSWORD = "vault-pw-1"  # tests/data/pass's


def content(root: Path) -> Path:
    ws = root / "content" / WORKSHOP
    ws.mkdir(parents=True)
    (ws / "wod.yml").write_text(f"name: {WORKSHOP}\nduration: 2\nrange: [9601, 9604]\n")
    (ws / "0-ReadMeFirst.ipynb").write_text(notebook(
        ("markdown", "# Lab of {{ STUDENT }}: key {{ APIKEY | default('none') }}")))
    return root / "content"


@pytest.fixture(scope="module")
def host():
    """(root, config, frontend, hub url)."""
    subprocess.run(["useradd", "-m", MONITOR], capture_output=True)
    Path(f"/var/mail/{MONITOR}").unlink(missing_ok=True)
    port = free_port()
    with setup_host(listen_port=PORT, relays=("127.0.0.1",), signed=False,
                    limits="{disk_mb: 5}", content=content) as (root, cfg, fe):
        fe.add_workshop(2, WORKSHOP)
        fe.state.locations.clear()  # the site's row, for this hub
        fe.add_location(DOMAIN, port=str(port))
        private = root / "hooks-private"
        (private / "scripts").mkdir(parents=True)
        shutil.copytree(DATA / "pass", private / "pass")
        # The operator's per-seat file for student LOW, in the original's name.
        os.rename(private / "pass" / "variables_WKSHP-Vars_4.yml",
                  private / "pass" / f"variables_{WORKSHOP}_{LOW}.yml")
        vault = root / "etc" / "vault.pass"
        vault.write_text(VAULT_PASSWORD + "\n")
        vault.chmod(0o600)
        url = f"http://127.0.0.1:{port}"
        edit_config(cfg, {
            "hooks": {"private": str(private), "vault_password_file": str(vault)},
            "schedule": {"report": f"{MONITOR}@localhost"},
            "jupyterhub": {"url": url, "token_file": str(root / "etc" / "hub.token"),
                           "manage": True, "venv": "/var/tmp/wod-test-hub-venv",
                           "data_dir": str(root / "hub-data"), "timeout": 30,
                           "hub_port": free_port(), "proxy_api_port": free_port(),
                           "login_failures": 3, "ban_minutes": 15}})
        p = wod(cfg, "setup", "--yes", timeout=1800)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr
        try:
            yield root, cfg, fe, url
        finally:
            subprocess.run(["userdel", "-r", MONITOR], capture_output=True)
            Path(f"/var/mail/{MONITOR}").unlink(missing_ok=True)


def create(root: Path, fe, n: int) -> str:
    """A CREATE as the frontend sends it; the password it received."""
    fe.state.students[n]["password"] = ""
    replies = frontend_send(PORT, f"{USER}@{DOMAIN}", f"CREATE {n} 4711", WORKSHOP)
    assert replies[-1].startswith("250"), replies
    try:
        wait_for("the password", lambda: fe.state.students[n]["password"], root)
    except AssertionError as exc:
        log = (root / "state" / "wod-backend.log").read_text()[-3000:]
        raise AssertionError(f"{exc}\n{log}")
    wait_for("the notebook", lambda: (root / "homes" / f"student{n}" / WORKSHOP /
                                      "0-ReadMeFirst.ipynb").exists(), root)
    return fe.state.students[n]["password"]


def test_an_operators_vaulted_per_student_value_reaches_the_notebook(host):
    root, cfg, fe, _ = host
    create(root, fe, LOW)
    nb = (root / "homes" / f"student{LOW}" / WORKSHOP / "0-ReadMeFirst.ipynb").read_text()
    assert f"Lab of student{LOW}: key vaulted-key-4" in nb
    assert "vaulted-key-4" not in (root / "state" / "wod-backend.log").read_text()
    assert "vaulted-key-4" not in wod(cfg, "history", "--json").stdout


class _From(HTTPAdapter):
    """requests from a given loopback address (the client the hub sees)."""

    def __init__(self, source: str):
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["source_address"] = (self.source, 0)
        return super().init_poolmanager(*args, **kwargs)


def login(url: str, source: str, user: str, password: str) -> requests.Response:
    """A login at /hub/login as a browser does it (the form's _xsrf, then the POST)."""
    s = requests.Session()
    s.mount("http://", _From(source))
    page = s.get(f"{url}/hub/login", timeout=30)
    xsrf = s.cookies.get("_xsrf") or ""
    return s.post(f"{url}/hub/login?next=", data={"username": user, "password": password,
                                                  "_xsrf": xsrf},
                  allow_redirects=False, timeout=30, headers={"Referer": page.url})


def test_password_guessing_bans_one_address_and_not_the_others(host):
    root, cfg, fe, url = host
    n = LOW + 1
    password = create(root, fe, n)
    user = f"student{n}"
    for _ in range(3):
        r = login(url, "127.0.0.2", user, "not-the-password")
        assert r.status_code == 403 or "Invalid username or password" in r.text
    refused = login(url, "127.0.0.2", user, password)  # banned: even the right one
    assert refused.status_code == 403 and "too many failed logins from 127.0.0.2" in \
        refused.text
    assert login(url, "127.0.0.3", user, password).status_code == 302  # others log in
    for _ in range(4):  # 127.0.0.1 is never banned
        login(url, "127.0.0.1", user, "not-the-password")
    assert login(url, "127.0.0.1", user, password).status_code == 302
    doctor = wod(cfg, "doctor").stdout
    assert "[warn] logins: 1 address(es) refused after repeated failed logins: 127.0.0.2"\
        in doctor, doctor
    assert "127.0.0.2  (15 min left)" in wod(cfg, "status").stdout
    assert "wod_hub_banned_addresses 1" in wod(cfg, "metrics").stdout


def messages() -> list[mailbox.mboxMessage]:
    path = Path(f"/var/mail/{MONITOR}")
    return list(mailbox.mbox(str(path))) if path.exists() else []


def test_the_operator_is_mailed_when_checks_turn_red_and_daily_never_twice(host):
    root, cfg, fe, _ = host
    green = wod(cfg, "report", "--dry-run").stdout
    assert green.startswith("nothing to mail"), green  # all green
    state = root / "state"
    state.chmod(0o755)  # a red check: doctor's state_dir
    try:
        p = wod(cfg, "report")
        assert p.returncode == 0 and "mailed to wodmon@localhost" in p.stdout, \
            p.stdout + p.stderr
        wait_for("the report in the mailbox", lambda: len(messages()) == 1, root)
        msg = messages()[0]
        assert "TROUBLE: 1 red check(s)" in msg["Subject"]
        body = msg.get_payload(decode=True).decode()
        assert f"state_dir: {state} is mode 0755" in body
        assert "Seats in use:" in body and "Orders refused in the last 24 h:" in body
        assert wod(cfg, "report").stdout.startswith("nothing to mail")  # same state
    finally:
        state.chmod(0o700)
    assert wod(cfg, "report").stdout.startswith("nothing to mail")
    p = wod(cfg, "report", "--daily")
    assert "daily report" in p.stdout, p.stdout + p.stderr
    wait_for("the daily report", lambda: len(messages()) == 2, root)
    daily = messages()[1].get_payload(decode=True).decode()
    assert "Red checks (0):" in daily and "Seats in use: " in daily
    assert wod(cfg, "report", "--daily").stdout.startswith("nothing to mail")
    time.sleep(1)
    assert len(messages()) == 2
    cron = Path("/etc/cron.d/wod-backend-setup-test").read_text()
    assert " report >/dev/null" in cron and "report --daily" in cron


def live_processes(uid: int) -> list[str]:
    """The uid's processes, zombies left out (PID 1 here reaps no orphan)."""
    out = subprocess.run(["ps", "-o", "stat=,comm=", "-u", str(uid)], capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if line.split() and
            not line.split()[0].startswith("Z")]


def test_a_student_over_the_disk_budget_is_warned_then_evicted(host):
    root, cfg, fe, _ = host
    n, small = LOW + 2, LOW + 3
    password = create(root, fe, n)
    create(root, fe, small)
    home = root / "homes" / f"student{n}"
    subprocess.run(["su", "-", f"student{n}", "-c",
                    "head -c 8000000 /dev/urandom > big.bin; setsid sleep 600 "
                    ">/dev/null 2>&1 < /dev/null &"], check=True, timeout=60)
    doctor = wod(cfg, "doctor").stdout
    assert "disk budget: 5 MB per student: the sweep measures the homes" in doctor, doctor
    first = json.loads(wod(cfg, "sweep", "--json").stdout)
    assert first["disk"] == {str(n): "warned: 8 MB over the budget of 5 MB"}, first
    warning = (home / "DISK-BUDGET-WARNING.txt").read_text()
    assert "over this workshop's budget of 5 MB" in warning
    assert not (root / "homes" / f"student{small}" / "DISK-BUDGET-WARNING.txt").exists()
    second = json.loads(wod(cfg, "sweep", "--json").stdout)
    assert second["disk"][str(n)].startswith("evicted: done"), second
    assert str(small) not in second["disk"]
    assert (home / "big.bin").exists()  # kept for the archive until the CLEANUP
    assert fe.state.students[n]["password"] not in ("", password)
    assert live_processes(UID_BASE + n) == []
    history = json.loads(wod(cfg, "history", "--json").stdout)
    evict = next(e for e in history if e["action"] == "EVICT" and e["students"] == [n])
    assert "disk: the home uses 8 MB" in evict["detail"]


def _mkfs(image: Path, quota: bool) -> None:
    subprocess.run(["truncate", "-s", "96M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", *(["-O", "quota", "-E", "quotatype=usrquota"]
                                               if quota else []), str(image)], check=True)


def test_the_disk_budget_on_a_loop_mounted_ext4(tmp_path):
    """Quotas where the kernel has them: an ext4 image with the quota feature, mounted
    with usrquota; setup's step sets soft/hard limits, writing past the hard one fails,
    the sweep reads usage from the quota. This kernel may lack quota formats (ext4 then
    refuses the image): the homes go on an ext4 image without quotas instead, and the
    sweep's own measure warns then evicts there."""
    from support.accounts import students_config
    from support.cli import invoke
    from wod_backend import config
    from wod_backend.host.setup import ensure_disk_budget
    from wod_backend.system import disk

    low, uid_base = 9651, 46000
    image, mnt = tmp_path / "homes.img", Path(f"/var/tmp/wod-quota-{os.getpid()}")
    mnt.mkdir(mode=0o755)
    _mkfs(image, quota=True)
    mounted = subprocess.run(["mount", "-o", "loop,usrquota", str(image), str(mnt)],
                             capture_output=True, text=True)
    quotas = mounted.returncode == 0
    if not quotas:  # e.g. "The kernel was not built with CONFIG_QUOTA and CONFIG_QFMT_V2"
        _mkfs(image, quota=False)
        subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        mnt.chmod(0o755)
        variables = "variables: {BRANDING: T, SURVEYURL: 'https://s', BACKEND_HOST: b}\n"
        with students_config(tmp_path, low, low + 1, uid_base, variables) as (path, homes):
            edit_config(path, {"students": {"home_root": str(mnt),
                                            "limits": {"disk_mb": 5}}})
            assert invoke(["--config", str(path), "students", "ensure"]).code == 0
            cfg = config.load(str(path))
            assert disk.mount_of(cfg.students.home_root).point == mnt
            doctor = invoke(["--config", str(path), "doctor"]).out
            if quotas:
                assert ensure_disk_budget(cfg, True)  # soft 5 MB, hard 7.5 MB
                assert disk.repquota(disk.mount_of(mnt))[uid_base + low][1:] == (5120, 7680)
                assert "user quotas on" in invoke(["--config", str(path), "doctor"]).out
            else:
                assert f"the sweep measures the homes ({mnt} (ext4) is mounted without " \
                       f"usrquota)" in doctor, doctor
                assert ensure_disk_budget(cfg, True) == []
            assert invoke(["--config", str(path), "create", "WKSHP-Python101", str(low),
                           "--customer", "4711"]).code == 0
            write = subprocess.run(["su", "-", f"student{low}", "-c",
                                    "head -c 7000000 /dev/zero > big.bin"],
                                   capture_output=True, text=True)
            assert write.returncode == 0, write.stderr  # under the hard limit
            if quotas:
                past = subprocess.run(["su", "-", f"student{low}", "-c",
                                       "head -c 4000000 /dev/zero > more.bin"],
                                      capture_output=True, text=True)
                assert "Disk quota exceeded" in past.stderr
            first = json.loads(invoke(["--config", str(path), "sweep", "--json"]).out)
            assert first["disk"][str(low)].startswith("warned: "), first
            assert (mnt / f"student{low}" / "DISK-BUDGET-WARNING.txt").exists()
            second = json.loads(invoke(["--config", str(path), "sweep", "--json"]).out)
            assert second["disk"][str(low)].startswith("evicted: done"), second
            assert str(low + 1) not in second["disk"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(mnt, ignore_errors=True)
