"""Issue 18: a sweep over 200 students, each with a login's worth of processes (a shell
and a sleeper, started as the student), with and without per-student limits (then the
sweep also moves every process into the students' cgroups). Run as root: the cgroup
writes happen in-process, where the backend user's sweep asks the sudo helper."""

from __future__ import annotations

import json
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.harness import REPO, Report, Row, repeat, wod

LOW, COUNT, UID_BASE = 8801, 200, 52000


def _config(root: Path, limits: bool) -> Path:
    cfg = root / ("limited.yml" if limits else "plain.yml")
    extra = "\n           limits: {tasks: 200, memory_mb: 1024, cpu_percent: 100}," \
        if limits else ""
    cfg.write_text(f"""
students: {{min: {LOW}, max: {LOW + COUNT - 1}, uid_base: {UID_BASE},{extra}
           home_root: {root}/homes, kill_grace_seconds: 1}}
content: {{public: {REPO}/workshops-public}}
state_dir: {root}/state-{'limited' if limits else 'plain'}
""")
    return cfg


def sweep_200(report: Report, times: int) -> None:
    from wod_backend.system import limits

    report.header(f"issue 18: `wod-backend sweep` over {COUNT} students with processes")
    root = Path(tempfile.mkdtemp(prefix="wod-sweep-", dir="/var/tmp"))
    root.chmod(0o755)
    (root / "homes").mkdir()
    plain, limited = _config(root, False), _config(root, True)
    procs: list[subprocess.Popen] = []
    try:
        wod(["--config", str(plain), "students", "ensure"])
        for n in range(LOW, LOW + COUNT):
            pw = pwd.getpwnam(f"student{n}")
            procs.append(subprocess.Popen(
                ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                 "/bin/sh", "-c", "sleep 600 & wait"], cwd="/", start_new_session=True))
        seen = json.loads(wod(["--config", str(plain), "sweep", "--json"]).stdout)
        for name, cfg in (("no limits", plain), ("limits on (processes into cgroups)",
                                                  limited)):
            samples = repeat(lambda _i, c=cfg: wod(["--config", str(c), "sweep"]), times)
            report.add(Row(f"sweep_{COUNT}: {name}, whole process", "s", samples, "",
                           f"{seen['processes']} processes of {seen['students']} students; "
                           f"as root, in-process (no sudo)",
                           {"id": f"sweep_{COUNT}" + ("_limits" if cfg is limited else "")}))
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        subprocess.run(["pkill", "-KILL", "-u", ",".join(str(UID_BASE + n) for n in
                                                       range(LOW, LOW + COUNT))], check=False)
        wod(["--config", str(plain), "students", "remove", f"{LOW}-{LOW + COUNT - 1}"],
            check=False)
        for n in range(LOW, LOW + COUNT):
            limits.remove_groups(UID_BASE + n)
        shutil.rmtree(root, ignore_errors=True)


def cleanup_backup(report: Report, times: int) -> None:
    """Issue 19: CLEANUP (as root, in-process) of an untouched home and of one with
    20 MB of changed files in its workshop folder, archived before the wipe."""
    import os

    report.header("issue 19: CLEANUP with the student's changes archived first")
    root = Path(tempfile.mkdtemp(prefix="wod-backup-", dir="/var/tmp"))
    root.chmod(0o755)
    (root / "homes").mkdir()
    n = 8701
    cfg = root / "config.yml"
    cfg.write_text(f"""
students: {{min: {n}, max: {n}, uid_base: 53000, home_root: {root}/homes,
           kill_grace_seconds: 1}}
content: {{public: {REPO}/workshops-public}}
state_dir: {root}/state
backups: {{dir: {root}/backups}}
variables: {{BRANDING: Bench, SURVEYURL: 'https://s', BACKEND_HOST: localhost}}
""")
    try:
        wod(["--config", str(cfg), "students", "ensure"])
        for changed_mb in (0, 20):
            samples = []
            for _ in range(times):
                wod(["--config", str(cfg), "create", "WKSHP-Python101", str(n)])
                if changed_mb:
                    folder = root / "homes" / f"student{n}" / "WKSHP-Python101"
                    (folder / "work.bin").write_bytes(os.urandom(changed_mb << 20))
                    nb = folder / "1-Basics.ipynb"
                    if nb.exists():
                        nb.write_text(nb.read_text() + " ")
                samples.append(repeat(lambda _i: wod(["--config", str(cfg), "cleanup",
                                                      "WKSHP-Python101", str(n)]), 1)[0])
            report.add(Row(f"cleanup_backup_{changed_mb}mb: CLEANUP, {changed_mb} MB changed "
                           f"in the workshop folder", "s", samples,
                           "<= 0.300 + 0.020/MB", "whole process, as root",
                           {"id": f"cleanup_backup_{changed_mb}mb"}))
    finally:
        wod(["--config", str(cfg), "students", "remove", str(n)], check=False)
        shutil.rmtree(root, ignore_errors=True)
