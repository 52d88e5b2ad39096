"""The privilege boundary against a compromised backend user (docs/security.md, "Threat model").

Real accounts, the real sudo rule (scripts/sudoers.example), a root-owned configuration
and content; the backend user's moves are scripted: links planted in state_dir, a
scratch folder renamed in a loop while the helper runs, a rewritten journal row, a
caller-chosen compile script. Victims are root-owned files and folders whose checksum
and mode must not change. A deterministic check runs the helper under a Python audit
hook and asserts that root opens nothing in state_dir or inside a home by path.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from support.configs import edit_config
from support.cli import REPO, invoke
from support.accounts import backend_user, install_sudo_rule, remove_students, state_dir
from support.cli import WOD

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("sudo") is None, reason="needs sudo")]

USER = "wodbound"
LOW, HIGH, UID_BASE = 9301, 9304, 40000
HELPER = str(Path(sys.executable).parent / "wod-backend-priv")


class Box:
    def __init__(self, root: Path, cfg: Path, state: Path, victim: Path, victim_dir: Path):
        self.root, self.cfg, self.state = root, cfg, state
        self.victim, self.victim_dir = victim, victim_dir
        self.pw = pwd.getpwnam(USER)

    def fingerprint(self) -> tuple:
        st, dst = os.lstat(self.victim), os.lstat(self.victim_dir)
        return (hashlib.sha256(self.victim.read_bytes()).hexdigest(), st.st_mode, st.st_uid,
                dst.st_mode, dst.st_uid, sorted(os.listdir(self.victim_dir)))

    def as_user(self, argv: list[str], data: bytes = b"", timeout: float = 120):
        return subprocess.run(["setpriv", f"--reuid={self.pw.pw_uid}",
                               f"--regid={self.pw.pw_gid}", "--init-groups", *argv],
                              input=data, capture_output=True, timeout=timeout, cwd="/")

    def helper(self, request: dict) -> tuple[int, dict]:
        p = self.as_user(["sudo", "-n", HELPER, "--config", str(self.cfg)],
                         json.dumps(request).encode())
        out = p.stdout.decode().strip().splitlines()
        return p.returncode, json.loads(out[-1]) if out else {}


@pytest.fixture(scope="module")
def box():
    sudoers = Path("/etc/sudoers.d/wod-backend-bound-test")
    with backend_user(USER, "wod-bound-") as root:
        try:
            (root / "homes").mkdir(mode=0o755)
            content = root / "content"
            shutil.copytree(REPO / "workshops-public", content)
            comp = content / "WKSHP-Comp"
            shutil.copytree(content / "WKSHP-API101", comp)
            shutil.copy(content / "variables_WKSHP-API101.yml", content / "variables_WKSHP-Comp.yml")
            (comp / "wod.yml").write_text("%YAML 1.1\n---\nname: Comp\ncompile: [tool.sh]\n")
            hooks = root / "hooks"
            (hooks / "scripts").mkdir(parents=True)
            (hooks / "scripts" / "tool.sh").write_text("#!/bin/bash\necho tool {{ STUDENT }}\n")
            (hooks / "scripts" / "other.sh").write_text("#!/bin/bash\ncat /etc/shadow\n")
            (hooks / "scripts" / "create-WKSHP-Comp.sh").write_text(
                'id -u > "$WOD_STATE_DIR/hook-uid" 2>/dev/null || '
                'id -u > "/var/tmp/wod-bound-hook-uid-$WOD_STUDENT"\n')
            state = state_dir(root, USER)
            victim = root / "victim.conf"
            victim.write_text("root's own file\n")
            victim.chmod(0o644)
            victim_dir = root / "victim-dir"
            victim_dir.mkdir(mode=0o755)
            cfg = root / "config.yml"
            cfg.write_text(f"""
    students: {{min: {LOW}, max: {HIGH}, uid_base: {UID_BASE}, home_root: {root}/homes,
               kill_grace_seconds: 1}}
    content: {{public: {content}}}
    hooks: {{public: {hooks}, timeout: 60}}
    state_dir: {state}
    mail: {{backend_user: {USER}}}
    privileged: {{mode: auto}}
    variables: {{BRANDING: B, BACKEND_HOST: localhost}}
    """)
            cfg.chmod(0o644)
            install_sudo_rule(sudoers, cfg, USER)
            assert invoke(["--config", str(cfg), "students", "ensure"]).code == 0
            yield Box(root, cfg, state, victim, victim_dir)
        finally:
            sudoers.unlink(missing_ok=True)
            remove_students(root / "config.yml", LOW, HIGH)


def request(student: int, steps: list[str], **kw) -> dict:
    return {"action": "CREATE", "student": student, "workshop": "WKSHP-Comp",
            "customer": "0", "password": "abcdefghjkmn", "steps": steps, **kw}


def test_compile_ignores_links_and_races_in_state_dir(box):
    """Items 1 and 2: state_dir/tmp replaced by a link to a root folder, and a loop
    renaming whatever appears there and planting links, while the helper compiles."""
    before = box.fingerprint()
    tmp = box.state / "tmp"
    if tmp.exists() or tmp.is_symlink():
        box.as_user(["rm", "-rf", str(tmp)])
    box.as_user(["ln", "-s", str(box.victim_dir), str(tmp)])
    racer = subprocess.Popen(
        ["setpriv", f"--reuid={box.pw.pw_uid}", f"--regid={box.pw.pw_gid}", "--init-groups",
         "bash", "-c", f"""
         end=$((SECONDS+8)); mkdir -p {box.state}/t2
         while [ $SECONDS -lt $end ]; do
           for d in {box.state}/t2/*; do [ -e "$d" ] || continue
             mv "$d" "$d.x" 2>/dev/null && ln -s {box.victim} "$d" 2>/dev/null; done
         done"""], cwd="/")
    try:
        for _ in range(3):
            code, answer = box.helper(request(LOW, ["compile"], compile=["tool.sh"]))
            assert code == 0, answer
    finally:
        racer.wait(20)
    home = box.root / "homes" / f"student{LOW}"
    out = subprocess.run([str(home / "tool")], capture_output=True, timeout=30).stdout
    assert out == f"tool student{LOW}\n".encode()
    assert box.fingerprint() == before
    assert os.readlink(tmp) == str(box.victim_dir)  # untouched, not followed


def test_caller_cannot_choose_what_root_compiles(box):
    """Item 4: a script the workshop's wod.yml does not list is refused."""
    home = box.root / "homes" / f"student{LOW + 1}"
    code, answer = box.helper(request(LOW + 1, ["compile"], compile=["other.sh"]))
    assert (code, answer["error"]) == (65, "script other.sh is not in the compile list "
                                           "of WKSHP-Comp's wod.yml")
    code, answer = box.helper(request(LOW + 1, ["compile"],
                                      flags={"compile": ["other.sh"]}))
    assert (code, answer["error"]) == (65, "flags are not taken from the caller: wod.yml "
                                           "decides")
    assert not (home / "other").exists()


def test_root_admin_order_switches_to_the_backend_user(box):
    """Items 3 and 6: links planted in state_dir (the log, locks/) are followed by no
    root process; the order's hook runs as the backend user."""
    before = box.fingerprint()
    for name in ("wod-backend.log", "locks"):
        path = box.state / name
        if path.exists() or path.is_symlink():
            box.as_user(["rm", "-rf", str(path)])
    box.as_user(["ln", "-s", str(box.victim), str(box.state / "wod-backend.log")])
    box.as_user(["ln", "-s", str(box.victim_dir), str(box.state / "locks")])
    p = subprocess.run([WOD, "--config", str(box.cfg), "create", "WKSHP-Comp", str(LOW + 2)],
                       capture_output=True, timeout=120)
    assert box.fingerprint() == before
    assert p.returncode in (0, 75), p.stderr  # locks/ unusable: at worst a retry later
    for name in ("wod-backend.log", "locks", "tmp"):  # tmp: the first test's link
        box.as_user(["rm", "-f", str(box.state / name)])
    p = subprocess.run([WOD, "--config", str(box.cfg), "create", "WKSHP-Comp", str(LOW + 2)],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (box.state / "hook-uid").read_text().strip() == str(box.pw.pw_uid)
    owners = {os.lstat(os.path.join(d, f)).st_uid for d, dirs, files in os.walk(box.state)
              for f in (*dirs, *files)}
    assert owners == {box.pw.pw_uid}  # root created nothing in state_dir
    assert box.fingerprint() == before


def test_hooks_run_as_the_backend_user_even_from_a_root_owned_state(box, tmp_path):
    """A set-up whose state_dir is root's (no switch) still runs hooks as
    mail.backend_user, with a scratch directory handed to that user."""
    state = box.root / "root-state"
    state.mkdir(mode=0o700, exist_ok=True)
    cfg = tmp_path / "config.yml"
    edit_config(box.cfg, {"state_dir": str(state)}, to=cfg)
    marker = Path(f"/var/tmp/wod-bound-hook-uid-{LOW + 3}")
    marker.unlink(missing_ok=True)
    try:
        r = invoke(["--config", str(cfg), "create", "WKSHP-Comp", str(LOW + 3)])
        assert r.code == 0, r.err + r.out
        assert marker.read_text().strip() == str(box.pw.pw_uid)
        assert os.stat(marker).st_uid == box.pw.pw_uid
    finally:
        marker.unlink(missing_ok=True)


def test_retry_shows_what_will_really_run(box):
    """Item 5: the backend user rewrote the raw mail of a journaled order; the admin's
    retry shows the order parsed from that mail, asks, and runs as the backend user."""
    p = subprocess.run([WOD, "--config", str(box.cfg), "create", "WKSHP-API101",
                        str(LOW + 3)], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    db = box.state / "journal.db"
    forged = (f"Subject: PURGE {LOW} 0\n\nWKSHP-API101\n").encode()
    script = (f"import sqlite3; c = sqlite3.connect({str(db)!r}); "
              f"c.execute('UPDATE orders SET raw=? WHERE id=(SELECT MAX(id) FROM orders)', "
              f"({forged!r},)); c.commit()")
    assert box.as_user([sys.executable, "-c", script]).returncode == 0
    entry = sqlite3.connect(db).execute("SELECT MAX(id) FROM orders").fetchone()[0]
    p = subprocess.run([WOD, "--config", str(box.cfg), "retry", str(entry)],
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    assert p.returncode == 64
    assert f"will run: PURGE WKSHP-API101 student{LOW} customer 0" in p.stderr.decode()
    assert "not on a terminal; confirm with --yes" in p.stderr.decode()
    last = sqlite3.connect(db).execute("SELECT MAX(id) FROM orders").fetchone()[0]
    assert last == entry  # nothing ran


def test_helper_refuses_code_or_content_others_can_write(box):
    """Item 7: content roots and hooks trees writable by someone but root."""
    content = box.root / "content" / "WKSHP-Comp"  # the workshop the request names
    os.chown(content, box.pw.pw_uid, box.pw.pw_gid)
    try:
        code, answer = box.helper(request(LOW, ["measure_completion"]))
        assert code == 78
        assert answer["error"].startswith("refusing to run as root: content root ")
        assert f"{content} is owned by uid {box.pw.pw_uid}, not root" in answer["error"]
        r = invoke(["--config", str(box.cfg), "doctor", "--json"])
        checks = {c["name"]: c for c in json.loads(r.out)}
        assert checks["root trust"]["status"] == "FAIL"
        assert f"{content} is owned by uid {box.pw.pw_uid}" in checks["root trust"]["detail"]
    finally:
        os.chown(content, 0, 0)
    other = box.root / "content" / "WKSHP-API101" / "0-ReadMeFirst.ipynb"
    other.chmod(0o666)  # another workshop: doctor walks every tree
    try:
        checks = {c["name"]: c for c in json.loads(
            invoke(["--config", str(box.cfg), "doctor", "--json"]).out)}
        assert checks["root trust"]["status"] == "FAIL"
        assert f"{other} is writable by group or others" in checks["root trust"]["detail"]
    finally:
        other.chmod(0o644)
    scripts = box.root / "hooks" / "scripts"
    scripts.chmod(0o777)
    try:
        code, answer = box.helper(request(LOW, ["measure_completion"]))
        assert code == 78 and "hooks tree" in answer["error"]
        assert "writable by group or others" in answer["error"]
    finally:
        scripts.chmod(0o755)
    code, answer = box.helper(request(LOW, ["measure_completion"]))
    assert code == 0, answer


AUDIT = r"""
import json, os, sys
state, homes = sys.argv[1], sys.argv[2]
seen = []
def hook(event, args):
    if event == "open" or event.startswith(("os.", "shutil.")):
        for a in args:
            if isinstance(a, (str, bytes, os.PathLike)):
                p = os.fsdecode(a)
                if p.startswith("/"):
                    seen.append((event, p))
sys.addaudithook(hook)
sys.argv = ["wod-backend-priv", "--config", sys.argv[3]]
from wod_backend.privileged.helper import main
try:
    main()
finally:
    with open(sys.argv[0] if False else os.environ["AUDIT_OUT"], "w") as fh:
        json.dump(seen, fh)
"""


def test_helper_opens_nothing_by_path_in_state_dir_or_homes(box, tmp_path):
    """Deterministic: every path root resolves during a whole CREATE's system steps and
    a CLEANUP's, under an audit hook; none lies in state_dir or inside a home."""
    out = tmp_path / "audit.json"
    steps = {"CREATE": ["ensure_account", "set_linux_password", "wipe_home",
                        "restore_skeleton", "ssh_key", "compile", "deliver_notebooks"],
             "CLEANUP": ["measure_completion", "set_linux_password", "wipe_home",
                         "kill_processes"]}
    seen = []
    for action, names in steps.items():
        req = request(LOW, names, compile=["tool.sh"], action=action)
        p = subprocess.run([sys.executable, "-c", AUDIT, str(box.state),
                            str(box.root / "homes"), str(box.cfg)],
                           input=json.dumps(req).encode(), capture_output=True, timeout=120,
                           env={**os.environ, "AUDIT_OUT": str(out)})
        assert p.returncode == 0, p.stdout + p.stderr
        seen += json.loads(out.read_text())
    assert seen, "the audit hook saw nothing"
    home = str(box.root / "homes" / f"student{LOW}")
    bad = [(e, p) for e, p in seen
           if p == str(box.state) or p.startswith(str(box.state) + "/")
           or p.startswith(home + "/")]
    assert bad == []
    assert any(p == str(box.root / "homes") for _e, p in seen)  # the trusted anchor
