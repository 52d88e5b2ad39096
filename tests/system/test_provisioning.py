"""Student provisioning on the real system: accounts, passwords, homes, delivery.

Runs as root (CI does) with real Linux users in a test range that cannot clash with
real accounts (student9001..., uid 40000 + N), removed at the end even on failure.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from support.cli import REPO, invoke
from support.accounts import password_works, shadow_hash, students_config
from wod_backend.system import accounts
from wod_backend import config
from wod_backend.system.passwords import generate, set_linux_passwords

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: real users")

FIRST, LAST = 9001, 9012
UID_BASE = 40000


@pytest.fixture
def root_cfg(tmp_path: Path):
    """A configuration with real accounts for students 9001..9012, homes in /var/tmp."""
    extra = (f"hooks: {{public: {REPO}}}\n"
             'variables: {BRANDING: "Test \\"quoted\\" brand", '
             'SURVEYURL: "https://s.example/?a=1&b=2", BACKEND_HOST: backend.test}\n'
             "appliances: {WKSHP-Ansible101: {host: 10.9.8.7, manage: false}}\n")
    with students_config(tmp_path, FIRST, LAST, UID_BASE, extra) as (path, _homes):
        yield config.load(str(path))


def test_ensure_creates_batch_idempotently_and_remove(root_cfg):
    report = accounts.ensure(root_cfg, range(FIRST, FIRST + 5))
    assert report.created == list(range(FIRST, FIRST + 5)) and not report.conflicts
    for n in range(FIRST, FIRST + 5):
        pw = pwd.getpwnam(f"student{n}")
        assert (pw.pw_uid, pw.pw_gid) == (UID_BASE + n, UID_BASE + n)
        home = Path(pw.pw_dir)
        assert home == root_cfg.students.home_root / f"student{n}"
        st = home.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (UID_BASE + n, 0o700)
        assert shadow_hash(f"student{n}") == "!"  # locked until a CREATE
    # No subordinate id ranges: students need none, and Debian's pool of them runs
    # out near 9,000 accounts.
    for path in ("/etc/subuid", "/etc/subgid"):
        text = Path(path).read_text() if Path(path).exists() else ""
        assert not any(line.startswith(f"student{FIRST}:") for line in text.splitlines())
    again = accounts.ensure(root_cfg, range(FIRST, FIRST + 6))
    assert again.present == list(range(FIRST, FIRST + 5)) and again.created == [FIRST + 5]
    gone = accounts.remove(root_cfg, [FIRST, FIRST + 1])
    assert gone.removed == [FIRST, FIRST + 1]
    with pytest.raises(KeyError):
        pwd.getpwnam(f"student{FIRST}")
    assert not (root_cfg.students.home_root / f"student{FIRST}").exists()
    assert accounts.remove(root_cfg, [FIRST]).absent == [FIRST]


def test_ensure_reports_uid_clash(root_cfg):
    subprocess.run(["useradd", "-M", "-u", str(UID_BASE + LAST), "wodclash"], check=True)
    try:
        report = accounts.ensure(root_cfg, [LAST])
        assert report.conflicts == [f"uid {UID_BASE + LAST} for student{LAST} is taken "
                                    f"by wodclash"]
        assert report.created == []
    finally:
        subprocess.run(["userdel", "wodclash"], check=True)


def test_password_set_by_hash_old_one_stops_working(root_cfg):
    accounts.ensure(root_cfg, [FIRST])
    user = f"student{FIRST}"
    first = generate(root_cfg.passwords)
    set_linux_passwords([(user, first)])
    assert password_works(user, first)
    second = generate(root_cfg.passwords)
    set_linux_passwords([(user, second)])
    assert password_works(user, second) and not password_works(user, first)
    assert len(second) == 12 and not set(second) & set("0O1lI")


def test_password_never_in_argv(root_cfg, monkeypatch):
    """Watch every process started while a password is set: none has it in argv."""
    accounts.ensure(root_cfg, [FIRST])
    import wod_backend.system.passwords as passwords
    seen = []
    real_run = passwords.run

    def spy(argv, **kw):
        seen.append(list(argv))
        return real_run(argv, **kw)

    monkeypatch.setattr(passwords, "run", spy)
    secret = generate(root_cfg.passwords)
    set_linux_passwords([(f"student{FIRST}", secret)])
    assert seen == [["chpasswd", "--crypt-method", "SHA512", "--sha-rounds", "5000"]]
    assert password_works(f"student{FIRST}", secret)
    hashed = shadow_hash(f"student{FIRST}")  # sha512_crypt at the default 5,000 rounds,
    assert hashed.startswith("$6$") and "rounds=" not in hashed  # which crypt omits


def test_create_cli_as_root_delivers_owned_valid_notebooks(root_cfg):
    cfgpath = str(root_cfg.path)
    r = invoke(["--config", cfgpath, "create", "WKSHP-Python101", str(FIRST),
                "--customer", "77"])
    assert r.code == 0, r.err + r.out
    user, uid = f"student{FIRST}", UID_BASE + FIRST
    home = root_cfg.students.home_root / user
    ws = home / "WKSHP-Python101"
    owners = {p.stat().st_uid for p in home.rglob("*")} | {home.stat().st_uid}
    assert owners == {uid}
    for nb in ws.glob("*.ipynb"):
        json.loads(nb.read_text())  # every delivered notebook is valid JSON
    readme = json.loads((ws / "0-ReadMeFirst.ipynb").read_text())
    text = "".join(readme["cells"][0]["source"])
    assert 'Test "quoted" brand' in text and f"student {FIRST}" in text
    password = text.split("your password is `")[1].split("`")[0]
    assert password_works(user, password)
    assert (ws / "pictures/logo.png").read_bytes() == \
        (REPO / "workshops-public/WKSHP-Python101/pictures/logo.png").read_bytes()
    assert not (ws / "wod.yml").exists()
    checkpoint = ws / ".ipynb_checkpoints" / "0-ReadMeFirst-checkpoint.ipynb"
    assert checkpoint.read_bytes() == (ws / "0-ReadMeFirst.ipynb").read_bytes()
    workspace = json.loads(next((home / ".jupyter/lab/workspaces").iterdir()).read_text())
    assert workspace["data"]["layout-restorer:data"]["main"]["current"] == \
        "notebook:WKSHP-Python101/0-ReadMeFirst.ipynb"
    ssh = home / ".ssh"
    assert stat.S_IMODE(ssh.stat().st_mode) == 0o700
    assert stat.S_IMODE((ssh / "id_ed25519").stat().st_mode) == 0o600
    assert (ssh / "authorized_keys").read_text().startswith("ssh-ed25519 ")
    assert (home / ".bash_aliases").is_file()
    # the password appears in no file but the notebook that asks for it
    hits = [p for p in home.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert sorted(p.name for p in hits) == ["0-ReadMeFirst-checkpoint.ipynb",
                                            "0-ReadMeFirst.ipynb"]
    log = (root_cfg.state_dir / "wod-backend.log").read_text() + \
        "".join(e["detail"] for e in json.loads(
            invoke(["--config", cfgpath, "history", "--json"]).out))
    assert password not in log


def test_hostile_home_links_are_removed_not_followed(root_cfg, tmp_path):
    accounts.ensure(root_cfg, [FIRST])
    home = root_cfg.students.home_root / f"student{FIRST}"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    victim_ssh = tmp_path / "victim-ssh"
    victim_ssh.mkdir()
    (home / "WKSHP-Python101").symlink_to(victim)
    (home / ".ssh").symlink_to(victim_ssh)
    (home / "link-to-etc").symlink_to("/etc")
    os.mkfifo(home / "a-fifo")
    deep = home / "tree"
    for i in range(100):
        d = deep / f"d{i}"
        d.mkdir(parents=True)
        for j in range(100):
            (d / f"f{j}").write_text("x")
    r = invoke(["--config", str(root_cfg.path), "create", "WKSHP-Python101", str(FIRST)])
    assert r.code == 0, r.err
    assert (victim / "precious").read_text() == "keep me" and len(list(victim.iterdir())) == 1
    assert list(victim_ssh.iterdir()) == []
    assert Path("/etc/passwd").exists()
    assert not (home / "WKSHP-Python101").is_symlink() and \
        (home / "WKSHP-Python101" / "0-ReadMeFirst.ipynb").is_file()
    assert not (home / ".ssh").is_symlink() and (home / ".ssh/authorized_keys").is_file()
    assert not (home / "tree").exists() and not (home / "a-fifo").exists()


def test_home_itself_replaced_by_a_link(root_cfg, tmp_path):
    accounts.ensure(root_cfg, [FIRST])
    home = root_cfg.students.home_root / f"student{FIRST}"
    shutil.rmtree(home)
    target = tmp_path / "elsewhere"
    target.mkdir()
    home.symlink_to(target)
    r = invoke(["--config", str(root_cfg.path), "create", "WKSHP-API101", str(FIRST)])
    assert r.code == 0, r.err
    assert not home.is_symlink() and home.is_dir()
    assert list(target.iterdir()) == []


def test_kill_processes_by_uid_not_by_name(root_cfg):
    accounts.ensure(root_cfg, [FIRST, FIRST + 1])
    from wod_backend.system.kill import kill_user_processes, pids_of

    def spawn(n):
        return subprocess.Popen(["setpriv", f"--reuid={UID_BASE + n}",
                                 f"--regid={UID_BASE + n}", "--clear-groups",
                                 "sleep", "300"])

    mine, other = spawn(FIRST), spawn(FIRST + 1)
    # a process whose command line names the student but runs as someone else
    decoy = subprocess.Popen(["sh", "-c", f"sleep 300; : /student{FIRST}"],
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while mine.pid not in pids_of(UID_BASE + FIRST) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert kill_user_processes(UID_BASE + FIRST, grace=1) >= 1
        assert mine.wait(5) == -signal.SIGTERM  # ended by the TERM, before any KILL
        assert other.poll() is None and decoy.poll() is None
    finally:
        for p in (mine, other):
            p.kill()
            p.wait()
        os.killpg(decoy.pid, signal.SIGKILL)  # the shell and its sleep
        decoy.wait()


def test_cleanup_completion_and_eviction(root_cfg):
    cfgpath = str(root_cfg.path)
    assert invoke(["--config", cfgpath, "create", "WKSHP-Python101", str(FIRST)]).code == 0
    from wod_backend.system.completion import completion

    home = root_cfg.students.home_root / f"student{FIRST}"
    ws = home / "WKSHP-Python101"
    src = REPO / "workshops-public" / "WKSHP-Python101"
    assert completion(src, home, "WKSHP-Python101") == 0
    nb = json.loads((ws / "1-Basics.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["execution_count"] = 1
    (ws / "1-Basics.ipynb").write_text(json.dumps(nb))
    (ws / "2-Data.ipynb").write_text("{ broken by the student")
    # 1-Basics: 3 code cells, all run; 2-Data: 2 code cells, unreadable -> 3 / 5
    assert completion(src, home, "WKSHP-Python101") == 60
    (ws / "1-Basics.ipynb").unlink()
    (ws / "1-Basics.ipynb").symlink_to("/etc/shadow")
    assert completion(src, home, "WKSHP-Python101") == 0
    # the workshop folder itself a link to a copy with every cell run: not followed
    done = home.parent / f"done-{FIRST}"
    shutil.copytree(ws, done)
    nb["cells"] = [dict(c, execution_count=1) if c["cell_type"] == "code" else c
                   for c in nb["cells"]]
    (done / "1-Basics.ipynb").unlink()
    (done / "1-Basics.ipynb").write_text(json.dumps(nb))
    shutil.rmtree(ws)
    ws.symlink_to(done)
    try:
        assert completion(src, home, "WKSHP-Python101") == 0
    finally:
        ws.unlink()
        shutil.rmtree(done)
    r = invoke(["--config", cfgpath, "cleanup", "WKSHP-Python101", str(FIRST)])
    assert r.code == 0, r.err
    assert list((root_cfg.students.home_root / f"student{FIRST}").iterdir()) == []
    assert shadow_hash(f"student{FIRST}").startswith("$6$")
