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
