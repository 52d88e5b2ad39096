"""The resident worker on the real mail path: postfix and procmail hand mails to
`wod-backend mail`, which passes them to the worker; the same outcomes, exit codes and
output as without it; a child killed mid-order is a 75 (postfix retries), a dead
worker's socket is no obstacle."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.cli import invoke
from support.mailpath import BACKEND_USER, mail_backend

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

LOW, HIGH = 9151, 9158
WOD = str(Path(sys.executable).parent / "wod-backend")


@pytest.fixture(scope="module")
def be():
    with mail_backend(low=LOW, high=HIGH, real_singleuser=False) as backend:
        ws = backend.root / "content" / "WKSHP-Slow"
        ws.mkdir()
        (ws / "wod.yml").write_text("name: Slow\n")
        (ws / "0-ReadMeFirst.ipynb").write_text(
            '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
        (backend.root / "hooks" / "scripts" / "create-WKSHP-Slow.sh").write_text("sleep 4\n")
        backend.fe.add_workshop(8, "WKSHP-Slow")
        yield backend
        invoke(["--config", str(backend.config), "worker", "stop"])


def as_backend(argv: list[str], data: bytes = b"", **kw) -> subprocess.Popen:
    pw = pwd.getpwnam(BACKEND_USER)
    return subprocess.Popen(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                             "--clear-groups", *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/", **kw)


def mail(be, data: bytes, *options: str) -> tuple[int, bytes, bytes]:
    p = as_backend([WOD, "--config", str(be.config), "mail", *options])
    out, err = p.communicate(data, timeout=120)
    return p.returncode, out, err


def worker(be, verb: str) -> subprocess.CompletedProcess:
    return subprocess.run([WOD, "--config", str(be.config), "worker", verb],
                          capture_output=True, timeout=60)


def handed_over(be) -> int:
    log = (be.root / "state" / "wod-backend.log").read_text(errors="replace")
    return log.count("worker: mail of process")


def create(n: int, workshop: str = "WKSHP-Python101", mid: str | None = None) -> bytes:
    return (f"Subject: CREATE {n} 4711\nMessage-ID: {mid or f'<{time.time_ns()}@w>'}\n\n"
            f"{workshop}\n").encode()


def test_mails_run_in_the_worker_with_the_same_outcomes(be):
    bad = b"Subject: RESET [object Promise] 4712\nWKSHP-API101\n"
    without = [mail(be, create(LOW), "--dry-run", "--json"), mail(be, bad)]
    assert worker(be, "start").returncode == 0
    assert worker(be, "status").returncode == 0
    seen = handed_over(be)
    with_worker = [mail(be, create(LOW), "--dry-run", "--json"), mail(be, bad)]
    assert handed_over(be) == seen + 2
    assert with_worker[0] == without[0] and with_worker[0][0] == 0   # output, code
    assert with_worker[1][0] == without[1][0] == 65
    assert with_worker[1][2] == without[1][2]                         # the one line
    # Through postfix and procmail: done, reported, the server started.
    before = handed_over(be)
    be.smtp_send(f"CREATE {LOW + 1} 4711 x@example.org", "WKSHP-Python101")
    be.wait("the CREATE", lambda: be.student(LOW + 1)["password"])
    be.wait("its journal entry", lambda: any(
        e["outcome"] == "done" and e["students"] == [LOW + 1] for e in be.history()))
    assert handed_over(be) == before + 1
    assert be.hub.wait_server(f"student{LOW + 1}", ready=True, bound=60)
    # The hub call was confirmed by a fork of the worker, not a new interpreter.
    entry = next(e for e in be.history() if e["students"] == [LOW + 1])
    log = (be.root / "state" / "wod-backend.log").read_text(errors="replace")
    assert f"worker: hub calls of order {entry['id']} confirmed by child" in log
    be.wait("the confirmation in the journal", lambda: "confirmed" in next(
        e for e in be.history() if e["id"] == entry["id"])["detail"])


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] != "Z":
                out.append(int(entry))
    return out


def test_an_order_killed_in_the_worker_is_a_retry_later(be):
    assert worker(be, "start").returncode == 0
    pid = int((be.root / "state" / "worker.pid").read_text().split()[0])
    msg = create(LOW + 2, "WKSHP-Slow", "<killed-once@w>")
    p = as_backend([WOD, "--config", str(be.config), "mail"])
    p.stdin.write(msg)
    p.stdin.close()
    deadline = time.monotonic() + 30
    while not children_of(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)  # in its create hook now
    for child in children_of(pid):
        os.killpg(child, signal.SIGKILL) if os.getpgid(child) == child else \
            os.kill(child, signal.SIGKILL)
    code, err = p.wait(60), p.stderr.read()
    assert code == 75 and b"delivered again" in err, err
    code, _out, err = mail(be, msg)  # postfix delivering it again
    assert code == 0, err
    entries = [e for e in be.history() if e["students"] == [LOW + 2]]
    assert [e["outcome"] for e in entries][:2] == ["done", "interrupted"]


def test_a_dead_workers_socket_is_no_obstacle(be):
    assert worker(be, "start").returncode == 0
    pid = int((be.root / "state" / "worker.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    assert (be.root / "state" / "worker.sock").is_socket()  # left behind
    seen = handed_over(be)
    code, _out, err = mail(be, create(LOW + 3))
    assert code == 0, err
    assert handed_over(be) == seen  # ran in its own process
    assert worker(be, "status").returncode == 3
    code, out, _err = mail(be, create(LOW + 3), "--dry-run", "--json")
    assert code == 0 and json.loads(out)["students"] == [LOW + 3]


def test_a_killed_worker_is_shown_down_and_the_schedule_brings_it_back(be):
    """Killed with -9, the worker is `warn` in doctor and 0 in metrics; the cron line
    setup writes (every minute, as the backend user) starts it again."""
    from prometheus_client.parser import text_string_to_metric_families

    from wod_backend import config
    from wod_backend.host.mailconf import cron_file

    def up() -> float:
        text = invoke(["--config", str(be.config), "metrics"]).out
        return [s.value for f in text_string_to_metric_families(text)
                for s in f.samples if s.name == "wod_worker_up"][0]

    assert worker(be, "start").returncode == 0
    assert up() == 1
    pid = int((be.root / "state" / "worker.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    assert up() == 0
    checks = {c["name"]: c for c in json.loads(
        invoke(["--config", str(be.config), "doctor", "--json"]).out)}
    assert checks["worker"]["status"] == "warn" and "not running" in checks["worker"]["detail"]
    line = [ln for ln in cron_file(config.load(str(be.config))).decode().splitlines()
            if ln.startswith("* * * * *") and ln.endswith("worker start >/dev/null")]
    assert len(line) == 1
    fields = line[0].split()
    assert fields[5] == BACKEND_USER
    # What cron runs, as the user the line names, in cron's environment.
    cron = as_backend(["/bin/sh", "-c", " ".join(fields[6:])],
                      env={"PATH": "/usr/bin:/bin", "HOME": "/",
                           "WOD_BACKEND_CONFIG": str(be.config)})
    cron.communicate(timeout=60)
    assert cron.returncode == 0
    assert up() == 1
    checks = {c["name"]: c for c in json.loads(
        invoke(["--config", str(be.config), "doctor", "--json"]).out)}
    assert checks["worker"]["status"] == "ok"


def test_a_recorded_worker_gets_the_mail_without_loading_the_configuration(be):
    """The worker records its socket for its configuration file in the backend user's
    own ~/.cache; a mail naming that very file goes straight there (PyYAML is not even
    imported); a changed file, or a record of a socket nobody listens on: the
    configuration is loaded, the mail still reaches the worker, the record is made
    again."""
    import stat

    assert worker(be, "start").returncode == 0
    pw = pwd.getpwnam(BACKEND_USER)
    record = Path(pw.pw_dir) / ".cache" / "wod-backend" / "worker-sockets"
    sock = be.root / "state" / "worker.sock"
    assert record.read_text().endswith(f"\t{sock}\n")
    info = record.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (pw.pw_uid, 0o600)

    def traced() -> bytes:
        p = as_backend([WOD, "--config", str(be.config), "mail", "--dry-run", "--json"],
                       env={"PYTHONPROFILEIMPORTTIME": "1"})
        out, err = p.communicate(create(LOW + 4), timeout=60)
        assert p.returncode == 0 and json.loads(out)["students"] == [LOW + 4], err
        return err

    seen = handed_over(be)
    assert b"| yaml" not in traced()
    assert handed_over(be) == seen + 1
    os.utime(be.config)  # the file changed: its record no longer matches
    assert b"| yaml" in traced()
    assert b"| yaml" not in traced()  # recorded again
    record.write_text(record.read_text().replace(str(sock), str(sock) + ".gone"))
    assert b"| yaml" in traced()
    assert handed_over(be) == seen + 4
    assert record.read_text().endswith(f"\t{sock}\n")
