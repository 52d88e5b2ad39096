"""Every command's `--json` output and exit code on the demo configuration, against a
golden record (tests/data/golden/cli.json): a refactoring changes no behaviour. Volatile
values (times, durations, passwords, pids, the temporary root) are normalised.

    WOD_GOLDEN_WRITE=1 pytest tests/unit/test_golden.py   # record anew (review the diff)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from support.cli import DATA, REPO, invoke

GOLDEN = DATA / "golden" / "cli.json"
SAMPLES = DATA / "mails" / "samples"

# (name, argv after --config, stdin sample or None)
COMMANDS: list[tuple[str, list[str], str | None]] = [
    ("mail dry run", ["mail", "--dry-run", "--json"], "frontend-create.eml"),
    ("mail", ["mail", "--json"], "frontend-create.eml"),
    ("mail again (duplicate)", ["mail", "--json"], "frontend-create.eml"),
    ("mail refused", ["mail", "--json"], "broken-sender.eml"),
    ("create dry run", ["create", "WKSHP-Ansible101", "3", "--dry-run", "--json"], None),
    ("create", ["create", "WKSHP-Ansible101", "3", "--customer", "4712", "--json"], None),
    ("create out of range", ["create", "WKSHP-Ansible101", "99", "--json"], None),
    ("cleanup", ["cleanup", "WKSHP-Ansible101", "3", "--customer", "4712", "--json"], None),
    ("reset range", ["reset", "WKSHP-Ansible101", "4-5", "--json"], None),
    ("purge", ["purge", "WKSHP-Python101", "6", "--json"], None),
    ("retry", ["retry", "2", "--yes", "--json"], None),
    ("history", ["history", "--json"], None),
    ("status", ["status", "1-6", "--json"], None),
    ("outbox list", ["outbox", "list", "--json"], None),
    ("outbox flush", ["outbox", "flush", "--json"], None),
    ("workshops list", ["workshops", "list", "--json"], None),
    ("workshops check", ["workshops", "check", "--json"], None),
    ("doctor", ["doctor", "--json"], None),
    ("sweep dry run", ["sweep", "--dry-run", "--json"], None),
    ("expire", ["expire", "--json"], None),
    ("reconcile", ["reconcile", "1-6", "--json"], None),
    ("backups list", ["backups", "list", "--json"], None),
    ("config check", ["config", "check"], None),
    ("maintenance status", ["maintenance", "status"], None),
    ("worker status", ["worker", "status"], None),
    ("appliances list", ["appliances", "list", "--json"], None),
    ("students ensure (demo)", ["students", "ensure", "1-2", "--json"], None),
    ("unknown command", ["explode"], None),
]

_TIME = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?")
_SECONDS = re.compile(r"\b\d+\.\d+ ?s\b")


def normalise(value: Any, root: str) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in ("received", "duration", "created", "next_try", "time", "when",
                       "pid", "started", "updated", "seconds", "age", "elapsed",
                       "size", "bytes", "mtime"):
                out[key] = "<volatile>" if item is not None else None
            elif key == "password" and item:
                out[key] = "<password>"
            else:
                out[key] = normalise(item, root)
        return out
    if isinstance(value, list):
        return [normalise(v, root) for v in value]
    if isinstance(value, str):
        text = value.replace(root, "<ROOT>").replace(str(REPO), "<REPO>")
        text = _TIME.sub("<time>", text)
        text = re.sub(r"\(process \d+\)", "(process <pid>)", text)
        return _SECONDS.sub("<N.Ns>", text)
    if isinstance(value, float):
        return "<float>"
    return value


def run_all(demo: Path) -> dict[str, Any]:
    root = str(demo.parent)
    record: dict[str, Any] = {}
    for name, args, sample in COMMANDS:
        data = (SAMPLES / sample).read_bytes() if sample else None
        r = invoke(["--config", str(demo), *args], input=data)
        try:
            out: Any = json.loads(r.out) if r.out.strip() else None
        except ValueError:
            out = r.out.strip().splitlines()
        record[name] = {"exit": r.code, "out": normalise(out, root),
                        "err": normalise(r.err.strip().splitlines()[-1:], root)}
    return record


def test_every_commands_json_and_exit_code_match_the_golden_record(demo):
    record = run_all(demo)
    if os.environ.get("WOD_GOLDEN_WRITE"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert sorted(record) == sorted(golden)
    for name in golden:
        assert record[name] == golden[name], name
