"""Issue 26: what a CREATE of an appliance workshop costs over a plain one
(`create_appliance`), on a host made by `setup` with a real second host (a Debian root
in its own namespaces, tests/support/appliance.py); and the transport chosen for the
appliance side, measured against the alternatives on the same appliance: one
multiplexed SSH connection per order, a new connection per call, one Ansible play."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Report, Row
from support.appliance import ADMIN, MONO, PLAIN, appliance_location
from support.setuphost import LOW, USER, wod

CALLS = 4  # what a CREATE does there: account, password, home, key


def create_appliance(report: Report, times: int) -> None:
    report.header("issue 26: an appliance workshop's CREATE over a plain one")
    plain, appliance = [], []
    with appliance_location(2) as (root, cfg, _fe, hosts, _):
        for i in range(times):
            n = LOW + i % 4
            for folder, samples in ((PLAIN, plain), (MONO, appliance)):
                start = time.monotonic()
                p = wod(cfg, "create", folder, str(n))
                samples.append(time.monotonic() - start)
                if p.returncode != 0:
                    raise RuntimeError(p.stdout + p.stderr)
        transports = _transports(root, hosts[0].address, times)
    report.add(Row(f"create plain ({PLAIN}), whole command", "s", plain))
    report.add(Row(f"create_appliance ({MONO}), whole command", "s", appliance,
                   note="account, password, clean home, key, known_hosts"))
    report.add(Row("create_appliance - create plain (medians)", "s",
                   [Row("", "", appliance).median - Row("", "", plain).median]))
    for name, samples in transports.items():
        report.add(Row(f"appliance transport: {CALLS} calls, {name}", "s", samples))


def _as_backend(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", USER, "--", *argv], capture_output=True,
                          text=True, timeout=120)


def _transports(root: Path, address: str, times: int) -> dict[str, list[float]]:
    """The same four sudo calls as the backend user, three ways."""
    known = root / "etc" / "known_hosts"
    base = ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}", "-l", ADMIN]
    call = ["sudo", "-n", "true"]
    work = Path(tempfile.mkdtemp(prefix="wod-bench-", dir="/var/tmp"))
    work.chmod(0o755)
    play = work / "play.yml"
    play.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n" + "".join(
        f"    - ansible.builtin.raw: sudo -n true\n      name: call {i}\n"
        for i in range(CALLS)))
    out: dict[str, list[float]] = {"one multiplexed connection": [],
                                   "a new connection each": [],
                                   "one ansible-playbook (raw tasks)": []}
    ansible = str(Path(__import__("sys").executable).parent / "ansible-playbook")
    for i in range(times):
        sock = f"/tmp/wod-bench-mux-{i}"
        start = time.monotonic()
        _as_backend(["sh", "-c", " ".join(base + ["-M", "-N", "-f", "-S", sock, address])])
        for _ in range(CALLS):
            _as_backend(base + ["-S", sock, address, *call])
        _as_backend(base + ["-S", sock, "-O", "exit", address])
        out["one multiplexed connection"].append(time.monotonic() - start)
        start = time.monotonic()
        for _ in range(CALLS):
            _as_backend(base + [address, *call])
        out["a new connection each"].append(time.monotonic() - start)
        start = time.monotonic()
        p = _as_backend([ansible, "-i", f"{address},", "-u", ADMIN, "-e",
                         f"ansible_ssh_common_args='-o UserKnownHostsFile={known}'",
                         str(play)])
        out["one ansible-playbook (raw tasks)"].append(time.monotonic() - start)
        if p.returncode != 0:
            raise RuntimeError(p.stdout[-1500:])
    return out
