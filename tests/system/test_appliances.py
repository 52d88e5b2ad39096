"""Appliance workshops on real second hosts (tests/support/appliance.py): a host made by
`setup`, whose backend user reaches two Debian appliances over SSH. A CREATE leaves the
student's account there with the password, a clean home and the student's key, and the
student on the backend logs in with no prompt, from a shell and from a published-style
ssh notebook; a CLEANUP locks both ways out; a down appliance defers the mail and
postfix's retry converges; a changed host key is refused; multi-appliance addressing
puts each student on its own host."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import paramiko
import pytest

from support.appliance import MONO, MULTI, PORT, UID_BASE as APP_UID_BASE, appliance_location
from support.cli import WOD
from support.setuphost import DOMAIN, LOW, UID_BASE, USER, frontend_send, wait_for, wod


@pytest.fixture(scope="module")
def location():
    """(root, config, frontend, appliances, first setup's output)."""
    with appliance_location(2) as where:
        yield where


def as_student(n: int, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """What the student types in a terminal on the backend (a login shell)."""
    return subprocess.run(["su", "-", f"student{n}", "-c", command], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def password_logs_in(address: str, user: str, password: str) -> bool:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(address, username=user, password=password, look_for_keys=False,
                       allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
        return True
    except paramiko.AuthenticationException:
        return False
    finally:
        client.close()


def student_home(root: Path, n: int) -> Path:
    return root / "homes" / f"student{n}"


def test_setup_records_the_host_keys_and_doctor_checks_each_appliance(location):
    root, cfg, _fe, hosts, setup_out = location
    known = (root / "etc" / "known_hosts").read_text()
    for host in hosts:
        offered = (host.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[1]
        assert f"{host.address} ssh-ed25519 {offered}" in known
    assert "recorded for 10.211.0.11:22" in setup_out
    p = wod(cfg, "appliances", "list")
    assert p.returncode == 0 and f"{MULTI:22} {hosts[1].address}" in p.stdout, p.stdout
    p = wod(cfg, "doctor")
    assert f"[ok  ] appliance {MONO}: 1 host(s): reachable, host key as recorded, key " \
           f"accepted, sudo, 4 student account(s)" in p.stdout, p.stdout
    assert f"[ok  ] appliance {MULTI}: 2 host(s)" in p.stdout, p.stdout


def test_create_sets_up_the_student_on_the_appliance(location):
    root, cfg, fe, hosts, _ = location
    n, app = LOW, hosts[0]
    planted = app.home(f"student{n}") / "left-from-last-week"
    planted.write_text("old work")
    p = wod(cfg, "create", MONO, str(n), "--dry-run")
    steps = p.stdout
    for step in ("appliance_account", "appliance_host_key", "appliance_password",
                 "appliance_home", "appliance_key"):
        assert step in steps, steps
    replies = frontend_send(PORT, f"{USER}@{DOMAIN}", f"CREATE {n} 4711 ada@example.org",
                            MONO)
    assert replies[-1].startswith("250"), replies
    wait_for("the delivered notebook", lambda: (student_home(root, n) / MONO /
                                                "0-ReadMeFirst.ipynb").exists(), root)
    password = fe.state.students[n]["password"]
    public = (student_home(root, n) / ".ssh/id_ed25519.pub").read_text()
    assert app.file(f"student{n}", ".ssh/authorized_keys") == public
    assert not planted.exists()
    assert sorted(os.listdir(app.home(f"student{n}"))) == [
        ".bash_logout", ".bashrc", ".profile", ".ssh"]
    assert password_logs_in(app.address, f"student{n}", password)
    # The student, on the backend, reaches the appliance with no password and no prompt;
    # the appliance's passwd is its own (another uid for the same name).
    r = as_student(n, f"ssh -o BatchMode=yes {app.address} 'id -un; id -u; hostname'")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == [f"student{n}", str(APP_UID_BASE + n), "appliance1"]
    assert pwd.getpwnam(f"student{n}").pw_uid == UID_BASE + n


def test_an_ssh_notebook_logs_in_as_the_published_ones_do(location):
    """The delivered notebook (`%login {{ hostvars[...]['IP-WKSHP-X'] }}`, then a
    command), run by a Jupyter kernel client as the student, with the ssh kernel."""
    root, cfg, _fe, hosts, _ = location
    n = LOW
    share = root / "jupyter" / "kernels" / "ssh"
    share.mkdir(parents=True)
    (share / "kernel.json").write_text(json.dumps({
        "argv": [str(Path(WOD).parent / "python"), "-m", "sshkernel", "-f",
                 "{connection_file}"], "display_name": "SSH", "language": "bash"}))
    for d in (root / "jupyter", share.parent, share):
        d.chmod(0o755)
    nbconvert = Path(WOD).parent / "jupyter-nbconvert"
    r = as_student(n, f"cd {MONO} && JUPYTER_PATH={root}/jupyter {nbconvert} --to notebook "
                      f"--execute --ExecutePreprocessor.timeout=60 --output executed "
                      f"0-ReadMeFirst.ipynb", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    nb = json.loads((student_home(root, n) / MONO / "executed.ipynb").read_text())
    login, command = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "".join(login["source"]) == f"%login {hosts[0].address}"
    text = "".join("".join(o.get("text", "")) for o in command["outputs"])
    assert f"on appliance1 as student{n} uid {APP_UID_BASE + n}" in text, command["outputs"]


def test_cleanup_locks_the_student_out_and_empties_the_appliance_home(location):
    root, cfg, fe, hosts, _ = location
    n, app = LOW, hosts[0]
    password = fe.state.students[n]["password"]
    r = as_student(n, f"ssh -o BatchMode=yes {app.address} "
                      f"'echo work > notes.txt; setsid sleep 600 >/dev/null 2>&1 < /dev/null &'")
    assert r.returncode == 0, r.stderr
    assert "sleep" in app.processes(APP_UID_BASE + n)
    replies = frontend_send(PORT, f"{USER}@{DOMAIN}", f"CLEANUP {n} 4711", MONO)
    assert replies[-1].startswith("250"), replies
    wait_for("the cleaned report", lambda: fe.state.customers[4711].get("cleaned"), root)
    assert app.file(f"student{n}", ".ssh/authorized_keys") is None
    assert sorted(os.listdir(app.home(f"student{n}"))) == [
        ".bash_logout", ".bashrc", ".profile"]
    assert app.processes(APP_UID_BASE + n) == []
    assert not password_logs_in(app.address, f"student{n}", password)
    r = as_student(n, f"ssh -o BatchMode=yes {app.address} true")
    assert r.returncode == 255


def test_a_down_appliance_defers_the_mail_and_the_retry_converges(location):
    root, cfg, fe, hosts, _ = location
    n, app = LOW + 1, hosts[0]
    app.stop()
    try:
        replies = frontend_send(PORT, f"{USER}@{DOMAIN}", f"CREATE {n} 4711", MONO)
        assert replies[-1].startswith("250"), replies
        wait_for("postfix deferring the order", lambda: "status=deferred" in (
            root / "maillog").read_text(errors="replace"), root)
        history = wod(cfg, "history", "--json").stdout
        assert f"appliance {app.address}:22 ({MONO}) is unreachable" in history, history
        # Nothing changed meanwhile: no notebook delivered, no password reported.
        assert not (student_home(root, n) / MONO).exists()
        assert fe.state.students[n]["password"] == ""
    finally:
        app.start()
    # postfix's next queue run (its backoff is seconds here, minutes in production).
    subprocess.run(["postqueue", "-f"], capture_output=True)
    wait_for("the retried order done", lambda: (student_home(root, n) / MONO /
                                                "0-ReadMeFirst.ipynb").exists(), root)
    public = (student_home(root, n) / ".ssh/id_ed25519.pub").read_text()
    wait_for("the key on the appliance",
             lambda: app.file(f"student{n}", ".ssh/authorized_keys") == public, root)
    r = as_student(n, f"ssh -o BatchMode=yes {app.address} id -un")
    assert r.stdout.strip() == f"student{n}", r.stderr


def test_a_hung_appliance_fails_the_order_temporarily_within_its_timeout(location):
    root, cfg, fe, hosts, _ = location
    n, app = LOW + 3, hosts[0]
    app.freeze()
    try:
        p = wod(cfg, "create", MONO, str(n), timeout=60)
    finally:
        app.freeze(False)
    assert p.returncode == 75, p.stdout + p.stderr
    assert f"appliance {app.address}:22 ({MONO})" in p.stdout + p.stderr
    assert not (student_home(root, n) / MONO).exists()
    p = wod(cfg, "create", MONO, str(n))
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_changed_host_key_is_refused_until_the_operator_accepts_it(location):
    root, cfg, fe, hosts, _ = location
    n, app = LOW + 2, hosts[0]
    known = (root / "etc" / "known_hosts").read_text()
    app.stop()
    app.rekey()
    app.start()
    p = wod(cfg, "create", MONO, str(n))
    assert p.returncode == 78, p.stdout + p.stderr
    assert f"appliance {app.address}:22 ({MONO}): its host key changed since setup " \
           f"recorded it" in p.stdout + p.stderr
    assert app.file(f"student{n}", ".ssh/authorized_keys") is None
    p = wod(cfg, "setup", "--yes", timeout=900)  # never replaced by setup
    assert (root / "etc" / "known_hosts").read_text() == known
    p = wod(cfg, "appliances", "forget", app.address)
    assert p.returncode == 0 and "1 recorded host key(s)" in p.stdout, p.stdout + p.stderr
    p = wod(cfg, "setup", "--yes", timeout=900)
    assert p.returncode == 0, p.stdout[-2000:]
    p = wod(cfg, "create", MONO, str(n))
    assert p.returncode == 0, p.stdout + p.stderr
    assert app.file(f"student{n}", ".ssh/authorized_keys") == (
        student_home(root, n) / ".ssh/id_ed25519.pub").read_text()


def test_multi_appliance_puts_each_student_on_its_own_host(location):
    root, cfg, fe, hosts, _ = location
    p = wod(cfg, "create", MULTI, f"{LOW}-{LOW + 1}")
    assert p.returncode == 0, p.stdout + p.stderr
    for n, mine, other in ((LOW, hosts[0], hosts[1]), (LOW + 1, hosts[1], hosts[0])):
        public = (student_home(root, n) / ".ssh/id_ed25519.pub").read_text()
        assert mine.file(f"student{n}", ".ssh/authorized_keys") == public
        assert other.file(f"student{n}", ".ssh/authorized_keys") != public
        known = (student_home(root, n) / ".ssh/known_hosts").read_text()
        assert known.startswith(mine.address + " ")
        r = as_student(n, f"ssh -o BatchMode=yes {mine.address} hostname")
        assert r.stdout.strip() == mine.name, r.stderr
    p = wod(cfg, "purge", MULTI, f"{LOW}-{LOW + 1}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert hosts[1].file(f"student{LOW + 1}", ".ssh/authorized_keys") is None
