"""The one narrow privileged entry point: `wod-backend-priv`, started through sudo.

The backend user (procmail's) runs unprivileged. The steps that need root on a
student (account, password, home wipe and restore, SSH key, delivery, compile,
completion, ending processes) go through this program, allowed by one sudoers rule
that pins its path and its configuration file (scripts/sudoers.example). It takes one
JSON request on stdin (the password never touches argv), and refuses, before doing
anything, a configuration not owned by root or writable by others, a verb outside
the root step kinds, a student number outside the configured range (so never root, the
backend user or any other account), a workshop name outside the catalog. It answers
one JSON line on stdout.

The caller's side is privileged/client.py. The steps themselves are system/steps.py,
which the executor calls as well: this program never needs the executor.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any, Optional

from wod_backend import config
from wod_backend.config import Config
from wod_backend.errors import (EX_CONFIG, EX_DATAERR, EX_NOPERM, EX_SOFTWARE, BadOrder,
                                ConfigError, WodError)
from wod_backend.order import (Order, parse_action, parse_customer, parse_workshop_name)
from wod_backend.planning.catalog import Catalog
from wod_backend.planning.steps import ROOT_KINDS, StepKind
from wod_backend.system import steps
from wod_backend.system.student import Host, Student
from wod_backend.system.trust import helper_trust_report

MAX_REQUEST = 65536


def _refuse(code: int, reason: str) -> int:
    print(json.dumps({"ok": False, "exit_code": code, "error": reason}))
    return code


def check_config_file(path: Path) -> None:
    """Only a configuration root controls may steer a root process."""
    st = path.stat()
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"{path} must be owned by root and writable by root only")


def parse_request(cfg: Config, raw: bytes) -> dict[str, Any]:
    try:
        req = json.loads(raw)
    except ValueError:
        raise BadOrder("request is not JSON")
    if not isinstance(req, dict):
        raise BadOrder("request is not a JSON object")
    student = req.get("student")
    if type(student) is not int or not cfg.student_in_range(student):
        raise BadOrder(f"student {student!r:.20} is outside the configured range "
                       f"{cfg.students.min}..{cfg.students.max}")
    steps = req.get("steps")
    allowed = sorted(k.value for k in ROOT_KINDS)
    if not isinstance(steps, list) or not steps or \
            not all(isinstance(s, str) and s in allowed for s in steps):
        raise BadOrder(f"steps must be a list of {', '.join(allowed)}")
    parse_action(str(req.get("action", "")))
    parse_workshop_name(str(req.get("workshop", "")))
    parse_customer(str(req.get("customer", "")))
    password = req.get("password")
    if password is not None and (
            not isinstance(password, str) or len(password) != cfg.passwords.length
            or not set(password) <= set(cfg.passwords.alphabet)):
        raise BadOrder("password does not follow the configured policy")
    if "flags" in req:
        raise BadOrder("flags are not taken from the caller: wod.yml decides")
    names = req.get("compile", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadOrder("compile must be a list of script names")
    return req


def serve(cfg: Config, req: dict[str, Any]) -> dict[str, Any]:
    """Run the requested root steps for one student, in this (root) process."""
    order = Order(action=parse_action(req["action"]), students=(req["student"],),
                  customer=req["customer"], workshop=req["workshop"], source="sudo")
    catalog = Catalog(cfg)
    ws = catalog.get(order.folder)
    # wod.yml in the root-owned content tree decides; the caller may only narrow what is
    # compiled (the frontend may), never add a script to it.
    meta = catalog.meta(ws)
    extra = [n for n in req.get("compile", []) if n not in meta.compile]
    if extra:
        raise BadOrder(f"script {extra[0]} is not in the compile list of "
                       f"{order.folder}'s wod.yml")
    meta = dataclasses.replace(meta, compile=tuple(n for n in meta.compile
                                                   if n in req.get("compile", [])))
    lines: list[str] = []
    host = Host(cfg, ws, meta, lines.append)
    student = Student.of(cfg, order, meta, req["student"])
    if req.get("password") is not None:
        student = student.with_password(req["password"])
    results: dict[str, Any] = {}
    for name in req["steps"]:
        results.update(steps.run(host, student, StepKind(name)))
    return {"ok": True, "log": lines, "results": results}


def main(argv: Optional[list[str]] = None) -> None:

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "--config":
        sys.exit(_refuse(64, "usage: wod-backend-priv --config FILE < request.json"))
    if os.geteuid() != 0:
        sys.exit(_refuse(EX_NOPERM, "wod-backend-priv must run as root (through sudo)"))
    try:
        path = Path(args[1])
        check_config_file(path)
        cfg = config.load(str(path))
        raw = sys.stdin.buffer.read(MAX_REQUEST + 1)
        if len(raw) > MAX_REQUEST:
            sys.exit(_refuse(EX_DATAERR, "request too large"))
        req = parse_request(cfg, raw)
        folder = Order(parse_action(req["action"]), (), "0", req["workshop"]).folder
        why = helper_trust_report(cfg, folder)
        if why:
            raise ConfigError(f"refusing to run as root: {why}")
        answer = serve(cfg, req)
    except WodError as exc:
        sys.exit(_refuse(exc.exit_code, exc.reason))
    except OSError as exc:
        sys.exit(_refuse(EX_CONFIG, f"{exc.filename}: {exc.strerror}"))
    except Exception as exc:  # one line, never a traceback into the caller's journal
        sys.exit(_refuse(EX_SOFTWARE, f"internal error: {type(exc).__name__}"))
    print(json.dumps(answer))
