"""Before/after, interleaved: `python -m benchmarks.compare OLD_TREE [NEW_TREE] [--runs N]`.

Two checkouts of wod-backend (a `git worktree` of the old commit, and this one by
default) run the same whole-process cases in alternation, run by run, on the same
machine at the same time, so that the machine's noise falls on both alike; it prints
the medians and the change. Each tree's bytecode is compiled first (a tree without it
would pay compilation in every process). As root it adds CREATE and CLEANUP with real
accounts (students 9501-9505, removed afterwards) and the privileged helper's step
groups; otherwise only start-up and the demo configuration.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
LOW, HIGH, UID_BASE = 9501, 9505, 40000
SAMPLE = REPO / "tests" / "data" / "mails" / "samples" / "frontend-create.eml"


# Entry points by module, so that two layouts of the package can be compared (the
# installed console scripts point at one layout only).
ENTRY = {
    "wod-backend": ["-m", "wod_backend"],
    "wod-backend-priv": ["-c", "import sys\ntry:\n from wod_backend.privileged.helper import main"
                               "\nexcept ImportError:\n from wod_backend.privileged import main"
                               "\nsys.argv[0] = 'wod-backend-priv'\nmain()"],
}


def run(tree: Path, program: str, args: list[str], data: Optional[bytes] = None,
        prefix: tuple[str, ...] = ()) -> float:
    """Seconds for the whole process; `prefix`: what runs it as another user."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    p = subprocess.run([*prefix, sys.executable, *ENTRY[program], *args], input=data,
                       capture_output=True, env=env, cwd="/")
    elapsed = time.perf_counter() - started
    if p.returncode != 0:
        raise RuntimeError(f"{tree}: {program} {args}: exit {p.returncode}: "
                           f"{(p.stdout + p.stderr)[-400:]!r}")
    return elapsed


Case = Callable[[Path, int], float]


def compare(name: str, trees: dict[str, Path], case: Case, runs: int) -> None:
    times: dict[str, list[float]] = {k: [] for k in trees}
    for i in range(runs):
        order = list(trees) if i % 2 == 0 else list(reversed(trees))
        for key in order:
            times[key].append(case(trees[key], i))
    old, new = (statistics.median(times[k]) for k in ("old", "new"))
    print(f"  {name:52} {old * 1000:8.1f} {new * 1000:8.1f} ms  {100 * (new - old) / old:+6.1f}%",
          flush=True)


def site(root: Path, tree: Path, accounts: bool) -> Path:
    """A demo configuration written by that tree, or a root one with real accounts."""
    if not accounts:
        run(tree, "wod-backend", ["config", "init", "--demo", str(root)])
        return root / "config.yml"
    root.mkdir(parents=True)
    cfg = root / "config.yml"
    cfg.write_text(f"""
students: {{min: {LOW}, max: {HIGH}, uid_base: {UID_BASE}, home_root: {root.parent}/homes,
           kill_grace_seconds: 1}}
content: {{public: {REPO}/workshops-public}}
state_dir: {root}/state
variables: {{BRANDING: B, BACKEND_HOST: localhost, SURVEYURL: "https://s.example"}}
""")
    return cfg


def handed_to_worker(root: Path, trees: dict[str, Path], mail: bytes, runs: int) -> None:
    """procmail's process when the resident worker listens: each tree's worker (its
    demo configuration, as a throwaway unprivileged user: root never hands over), and
    `mail --dry-run` sent to it by that tree's client."""
    import pwd

    user = "wodcompare"
    home = root / "home"
    subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", user], check=True)
    pw = pwd.getpwnam(user)
    home.mkdir()
    os.chown(home, pw.pw_uid, pw.pw_gid)
    as_user = ("setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups")
    workers, cfgs = [], {}
    try:
        for key, tree in trees.items():
            cfgs[tree] = site(root / f"worker-{key}", tree, False)
            subprocess.run(["chown", "-R", user, str(cfgs[tree].parent)], check=True)
            workers.append(subprocess.Popen(
                [*as_user, sys.executable, *ENTRY["wod-backend"], "--config",
                 str(cfgs[tree]), "worker", "run"], env={**os.environ, "PYTHONPATH": str(tree)},
                cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            deadline = time.monotonic() + 30
            while not (cfgs[tree].parent / "state" / "worker.sock").is_socket() and \
                    time.monotonic() < deadline:
                time.sleep(0.05)

        def client(tree: Path, _i: int) -> float:
            return run(tree, "wod-backend", ["--config", str(cfgs[tree]), "mail", "--dry-run"],
                       mail, as_user)
        compare("mail --dry-run handed to the resident worker", trees, client, runs)
    finally:
        for w in workers:
            w.terminate()
            w.wait(60)
        subprocess.run(["userdel", user], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.compare")
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path, nargs="?", default=REPO)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    for tree in trees.values():
        compileall.compile_dir(str(tree / "wod_backend"), quiet=1)
    root = Path(tempfile.mkdtemp(prefix="wod-compare-", dir="/var/tmp"))
    root.chmod(0o755)
    as_root = os.geteuid() == 0
    try:
        demo = {k: site(root / f"demo-{k}", t, False) for k, t in trees.items()}
        print(f"{'':54} {'old':>8} {'new':>8}")
        compare("wod-backend --version", trees,
                lambda t, i: run(t, "wod-backend", ["--version"]), args.runs)
        key = {trees[k]: k for k in trees}
        mail = SAMPLE.read_bytes()
        compare("wod-backend mail --dry-run (sample CREATE)", trees, lambda t, i: run(
            t, "wod-backend", ["--config", str(demo[key[t]]), "mail", "--dry-run"], mail),
            args.runs)
        compare("CREATE, demo configuration (no accounts)", trees, lambda t, i: run(
            t, "wod-backend", ["--config", str(demo[key[t]]), "create", "WKSHP-Python101",
                               str(1 + i % 20)]), args.runs)
        if as_root:
            handed_to_worker(root, trees, mail, args.runs)
            (root / "homes").mkdir(mode=0o755)
            real = {k: site(root / f"real-{k}", t, True) for k, t in trees.items()}
            run(trees["new"], "wod-backend", ["--config", str(real["new"]), "students",
                                              "ensure"])
            for action in ("create", "cleanup"):
                compare(f"{action.upper()}, real accounts (root, in-process)", trees,
                        lambda t, i, a=action: run(
                            t, "wod-backend", ["--config", str(real[key[t]]), a,
                                               "WKSHP-Python101", str(LOW + i % 5)]),
                        args.runs)
            for steps in (["set_linux_password"],
                          ["kill_processes", "wipe_home", "restore_skeleton", "ssh_key"],
                          ["deliver_notebooks"]):
                request = json.dumps({"action": "CREATE", "student": LOW,
                                      "workshop": "WKSHP-Python101", "customer": "0",
                                      "password": "abcdefghjkmn", "steps": steps}).encode()
                compare(f"helper: {','.join(steps)}"[:52], trees, lambda t, i, r=request: run(
                    t, "wod-backend-priv", ["--config", str(real[key[t]])], r), args.runs)
    finally:
        if as_root:
            cfg = root / "real-new" / "config.yml"
            if cfg.exists():
                run(trees["new"], "wod-backend", ["--config", str(cfg), "students", "remove",
                                                  f"{LOW}-{HIGH}"])
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
