"""The benchmark cases of the benchmarks issue, each printing rows as it goes."""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from benchmarks.harness import REPO, Report, Row, repeat, slope, timed, wod

LOW, HIGH, UID_BASE = 30001, 32000, 30000  # benchmark students: uid 60001..62000
SAMPLE = (REPO / "tests/data/mails/samples/frontend-create.eml").read_bytes()


def notebook(code_cells: int, title: str) -> str:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": [f"# {title} {{{{ STDID }}}}"]}]
    cells += [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
               "source": [f"x{i} = '{{{{ STUDENT }}}}'\n", f"print(x{i})"]}
              for i in range(code_cells)]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def make_workshop(root: Path, name: str, notebooks: int = 3, data_mb: int = 0,
                  meta: str = "") -> None:
    ws = root / name
    ws.mkdir(parents=True)
    (ws / "wod.yml").write_text(f"name: {name}\n{meta}")
    (ws / "0-ReadMeFirst.ipynb").write_text(notebook(0, name))
    for i in range(1, notebooks):
        (ws / f"{i}-Part.ipynb").write_text(notebook(10, f"part {i}"))
    if data_mb:
        (ws / "data").mkdir()
        with open(ws / "data" / "blob.bin", "wb") as fh:
            for _ in range(data_mb):
                fh.write(os.urandom(1 << 20))


@contextmanager
def bench_site(report: Report) -> Iterator[dict]:
    """Content, hooks, a contract frontend, a hub (mocksu, 202 at once), slapd, and a
    root configuration in direct mode for the benchmark students."""
    from support import jupyterhub, slapd
    from support.frontend import FrontendServer

    root = Path(tempfile.mkdtemp(prefix="wod-bench-", dir="/var/tmp"))
    root.chmod(0o755)
    fe = hub = ldap = None
    try:
        content = root / "content"
        shutil.copytree(REPO / "workshops-public", content)
        for n in (1, 10, 50):
            make_workshop(content, f"WKSHP-Nb{n}", notebooks=n)
        for mb in (1, 50, 200):
            make_workshop(content, f"WKSHP-Data{mb}", data_mb=mb)
        make_workshop(content, "WKSHP-Pics", notebooks=3, data_mb=2)
        make_workshop(content, "WKSHP-Big20", notebooks=20)
        make_workshop(content, "WKSHP-Play")
        make_workshop(content, "WKSHP-Resettable", meta="reset: true\n")
        hooks = root / "hooks"
        (hooks / "scripts").mkdir(parents=True)
        (hooks / "scripts" / "reset-WKSHP-Resettable.sh").write_text("true\n")
        (hooks / "playbooks" / "WKSHP-Play").mkdir(parents=True)
        playbook = hooks / "playbooks" / "WKSHP-Play" / "create.yml"
        playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                            "    - ansible.builtin.debug: {msg: '{{ wod_user }}'}\n")
        fe = FrontendServer().start()
        fe.add_students(range(LOW, HIGH + 1))
        fe.add_customer(1)
        for i, ws in enumerate(sorted(p.name for p in content.glob("WKSHP-*")), 1):
            fe.add_workshop(i, ws, ldap=ws == "WKSHP-Python101",
                            reset=ws in ("WKSHP-Resettable", "WKSHP-Ansible101"),
                            monoappliance=ws == "WKSHP-Ansible101")
        fe.add_customer(2, cleaned=True)
        hub = jupyterhub.start(root / "hub", extra="c.JupyterHub.slow_spawn_timeout = 0\n")
        ldap = slapd.start(root / "slapd")
        secrets = {"fe": "mod-Secret1", "hub": hub.token, "ldap": ldap.admin_password}
        for name, value in secrets.items():
            (root / f"{name}.secret").write_text(value + "\n")
            (root / f"{name}.secret").chmod(0o600)
        cfg = root / "config.yml"
        cfg.write_text(f"""
students: {{min: {LOW}, max: {HIGH}, uid_base: {UID_BASE}, home_root: {root}/homes,
           kill_grace_seconds: 1}}
content: {{public: {content}}}
hooks: {{public: {hooks}}}
ansible: {{python: {sys.executable}}}
state_dir: {root}/state
frontend: {{url: '{fe.url}', username: moderator, password_file: {root}/fe.secret}}
jupyterhub: {{url: '{hub.url}', token_file: {root}/hub.secret, timeout: 30}}
ldap: {{uri: '{ldap.uri}', bind_dn: '{slapd.ADMIN_DN}', password_file: {root}/ldap.secret,
       people_dn: '{slapd.PEOPLE_DN}'}}
intake: {{max_range: 2000, max_per_minute: 100000}}
variables: {{BRANDING: Bench, SURVEYURL: 'https://s', BACKEND_HOST: localhost}}
appliances: {{WKSHP-Ansible101: 127.0.0.1}}
""")
        (root / "homes").mkdir()
        for n in range(LOW, LOW + 40):
            ldap.add_person(f"student{n}")
        yield {"root": root, "config": cfg, "fe": fe, "hub": hub, "ldap": ldap,
               "playbook": playbook}
    finally:
        for server in (hub, ldap):
            if server:
                server.stop()
        if fe:
            fe.stop()
        shutil.rmtree(root, ignore_errors=True)


def step_times(detail: str) -> dict[str, float]:
    """Step durations from a journal entry's detail ("student3: name ok (0.012s)")."""
    out: dict[str, float] = {}
    for line in detail.splitlines():
        if " ok (" in line and line.endswith("s)") and ": " in line:
            name = line.split(": ", 1)[1].split(" ok (")[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit("(", 1)[1][:-2])
    return out


def last_entry(cfg: str) -> dict:
    from support.cli import invoke

    return json.loads(invoke(["--config", cfg, "history", "--limit", "1", "--json"]).out)[0]


def own_time(cfg: str, args: list[str]) -> float:
    """An order's wall time as a process, less the hub's spawn of a new server."""
    total = timed(lambda: wod(["--config", cfg, *args]))
    return total - step_times(last_entry(cfg)["detail"]).get("hub_start_server", 0)


def mail_for(action: str, n: int, customer: int, workshop: str) -> bytes:
    return f"Subject: {action} {n} {customer}\nMessage-ID: <{time.time_ns()}@b>\n\n" \
           f"{workshop}\n".encode()


# -- 1. start-up ----------------------------------------------------------------------

def startup(report: Report, times: int) -> None:
    report.header("1. start-up, as whole processes (procmail starts one per mail)")
    demo = Path(tempfile.mkdtemp(prefix="wod-bench-demo-"))
    try:
        wod(["config", "init", "--demo", str(demo)])
        cfg = str(demo / "config.yml")
        wod(["--version"])
        report.add(Row("wod-backend --version", "s", repeat(lambda i: wod(["--version"]),
                                                             times), "< 0.150"))
        report.add(Row("wod-backend mail --dry-run (sample CREATE)", "s", repeat(
            lambda i: wod(["--config", cfg, "mail", "--dry-run"], input=SAMPLE), times),
            "< 0.250"))
    finally:
        shutil.rmtree(demo, ignore_errors=True)


# -- 5a. accounts ---------------------------------------------------------------------

def accounts_ensure(report: Report, site: dict) -> None:
    report.header("5. scale: student accounts (one newusers run for the batch)")
    cfg = str(site["config"])
    half = LOW + 499
    t500 = timed(lambda: wod(["--config", cfg, "students", "ensure", f"{LOW}-{half}"]))
    report.add(Row("students ensure, 500 new accounts", "s", [t500]))
    t1500 = timed(lambda: wod(["--config", cfg, "students", "ensure", f"{LOW}-{HIGH}"]))
    report.add(Row("students ensure, 1,500 more (2,000 in all)", "s", [t1500]))
    report.add(Row("students ensure 2,000 (sum of the two runs)", "s", [t500 + t1500],
                   "< 120"))
    again = timed(lambda: wod(["--config", cfg, "students", "ensure", f"{LOW}-{HIGH}"]))
    report.add(Row("students ensure 2,000 again (all present: a no-op)", "s", [again]))


def accounts_remove(report: Report, site: dict) -> None:
    cfg = str(site["config"])
    t = timed(lambda: wod(["--config", cfg, "students", "remove", f"{LOW}-{HIGH}"],
                          check=False))
    report.add(Row("students remove 2,000 (userdel per account)", "s", [t]))


# -- 2, 3. CREATE latency -------------------------------------------------------------

def create_latency(report: Report, site: dict, times: int) -> None:
    report.header("2-3. CREATE latency through `wod-backend mail`, mail in to last report "
                  "sent (hub answers 202)")
    cfg = str(site["config"])
    wod(["--config", cfg, "mail"], input=mail_for("CREATE", LOW, 1, "WKSHP-Python101"))
    totals, hub_waits = [], []
    for i in range(times):  # a student never seen: the hub spawns a new server
        totals.append(timed(lambda: wod(["--config", cfg, "mail"], input=mail_for(
            "CREATE", LOW + 1 + i, 1, "WKSHP-Python101"))))
        hub_waits.append(step_times(last_entry(cfg)["detail"]).get("hub_start_server", 0))
    report.add(Row("CREATE notebook-only workshop, LDAP + hub + frontend", "s", totals,
                   "", "the hub answers 201 after its spawn, never 202"))
    report.add(Row("  its hub start call (the hub's spawn of the server)", "s", hub_waits))
    report.add(Row("  CREATE without the hub's spawn time", "s",
                   [t - h for t, h in zip(totals, hub_waits)], "< 0.200",
                   "reference: 8.1 s"))
    again = repeat(lambda i: wod(["--config", cfg, "mail"], input=mail_for(
        "CREATE", LOW + 1 + i, 1, "WKSHP-Python101")), times)
    report.add(Row("CREATE again, the student's server still running", "s", again, "< 0.200"))
    cleanup = repeat(lambda i: wod(["--config", cfg, "mail"], input=mail_for(
        "CLEANUP", LOW + 1 + i % 30, 1, "WKSHP-Python101")), times)
    report.add(Row("CLEANUP of the same", "s", cleanup, "", "reference: 0.65 s"))
    inventory = site["root"] / "inventory"
    inventory.write_text("localhost ansible_connection=local\n")
    env = {**os.environ, "ANSIBLE_GATHERING": "explicit", "ANSIBLE_NOCOLOR": "1"}
    playbook_alone = repeat(lambda i: subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), "-e",
         f"ansible_python_interpreter={sys.executable} wod_user=student{LOW}",
         str(site["playbook"])], capture_output=True, env=env, check=True), times)
    report.add(Row("the playbook alone (ansible-playbook)", "s", playbook_alone))
    with_hook, play_hub = [], []
    for i in range(times):
        with_hook.append(timed(lambda: wod(["--config", cfg, "mail"], input=mail_for(
            "CREATE", LOW + 1 + i, 1, "WKSHP-Play"))))
        play_hub.append(step_times(last_entry(cfg)["detail"]).get("hub_start_server", 0))
    report.add(Row("CREATE with one playbook hook", "s", with_hook))
    own = [t - h for t, h in zip(with_hook, play_hub)]
    report.add(Row("  without the hub's spawn time", "s", own))
    alone = sorted(playbook_alone)[len(playbook_alone) // 2]
    report.add(Row("  its overhead over the playbook alone (median)", "s",
                   [o - alone for o in own], "<= 0.300"))


# -- 5b, 6. scale and growth ----------------------------------------------------------

def growth(report: Report, site: dict, times: int) -> None:
    report.header("6. how the cost grows: CREATE against workshop size (less the hub's "
                  "spawn)")
    cfg = str(site["config"])
    for series, values, fmt in (("notebooks", (1, 10, 50), "WKSHP-Nb{}"),
                                ("MB of data", (1, 50, 200), "WKSHP-Data{}")):
        medians = []
        for v in values:
            row = report.add(Row(f"CREATE, {v} {series}", "s", [
                own_time(cfg, ["create", fmt.format(v), str(LOW + 50 + i), "--customer", "1"])
                for i in range(times)]))
            medians.append(row.median)
        report.add(Row(f"  slope per {series[:-1] if series.endswith('s') else series}",
                       "s", [slope(list(values), medians)]))
    report.add(Row("delivery: 3 notebooks + 2 MB of pictures (CREATE)", "s", [
        own_time(cfg, ["create", "WKSHP-Pics", str(LOW + 60 + i)]) for i in range(times)]))
    wod(["--config", cfg, "create", "WKSHP-Big20", str(LOW + 70)])
    from wod_backend.system.completion import completion

    src = site["root"] / "content" / "WKSHP-Big20"
    home = site["root"] / "homes" / f"student{LOW + 70}"
    report.add(Row("completion % over a 20-notebook workshop (190 code cells)", "s",
                   repeat(lambda i: completion(src, home, "WKSHP-Big20"), times)))
    report.add(Row("CLEANUP of that workshop (whole order)", "s", repeat(
        lambda i: wod(["--config", cfg, "cleanup", "WKSHP-Big20", str(LOW + 70)]), 1)))

    report.header("5-6. batches: RESET against range size (reset hook: a script)")
    sizes, medians = (10, 100, 1000), []
    for size in sizes:
        first = LOW + 100
        row = report.add(Row(f"RESET of a {size}-student range", "s", repeat(
            lambda i: wod(["--config", cfg, "reset", "WKSHP-Resettable",
                           f"{first}-{first + size - 1}", "--customer", "2"]), 1)))
        medians.append(row.median)
    report.add(Row("  slope per student", "s", [slope(list(sizes), medians)]))


def profile_batch(report: Report, site: dict) -> str:
    """cProfile of a 100-student RESET run in-process: where the time goes."""
    from support.cli import invoke

    prof = cProfile.Profile()
    prof.enable()
    invoke(["--config", str(site["config"]), "reset", "WKSHP-Resettable",
            f"{LOW + 200}-{LOW + 299}", "--customer", "2"])
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(18)
    return out.getvalue()


# -- the memory of the backend user's processes (production.burst) -------------------

def rss_sampler(uid: int, stop: threading.Event, peak: dict) -> None:
    while not stop.is_set():
        total = count = 0
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields.get("Uid", "-1 0").split()[0]) == uid and "VmRSS" in fields:
                total += int(fields["VmRSS"].split()[0])
                count += 1
        peak["kb"] = max(peak.get("kb", 0), total)
        peak["procs"] = max(peak.get("procs", 0), count)
        time.sleep(0.02)
