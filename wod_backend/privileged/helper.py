"""The one narrow privileged entry point: `wod-backend-priv`, started through sudo.

The backend user (procmail's) runs unprivileged. The steps that need root on a
student (account, password, home wipe and restore, SSH key, delivery, compile,
completion, ending processes) go through this program, allowed by one sudoers rule
that pins its path and its configuration file (scripts/sudoers.example). It takes one
JSON request on stdin (the password never touches argv), and refuses, before doing
anything, a configuration not owned by root or writable by others, a verb outside
the root step kinds, a student number outside the configured range (so never root, the
backend user or any other account), a workshop name outside the catalog. It serves
one order: one JSON request per line on stdin, each checked alone and answered by one
JSON line on stdout, until its input ends (a batch's students, or the groups of root
steps of one student, never start sudo and Python again). A `batch` request carries
several students (each checked against the range and the password policy) for one
step, so that one `chpasswd` sets all their passwords.

The caller's side is privileged/client.py. The steps themselves are system/root_steps.py,
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
from wod_backend.planning.catalog import Catalog, releases_dir
from wod_backend.planning.step_kinds import ROOT_KINDS, StepKind
from wod_backend.system import root_steps as steps
from wod_backend.system.student import Host, Student
from wod_backend.system.trust import helper_trust_report

MAX_REQUEST = 1 << 20  # a batch of 1,000 students is ~50 KB
MAX_BATCH = 1000


def _answer(answer: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def _refuse(code: int, reason: str) -> int:
    _answer({"ok": False, "exit_code": code, "error": reason})
    return code


def _check_password(cfg: Config, password: Any) -> None:
    if password is not None and (
            not isinstance(password, str) or len(password) != cfg.passwords.length
            or not set(password) <= set(cfg.passwords.alphabet)):
        raise BadOrder("password does not follow the configured policy")


def _check_student(cfg: Config, student: Any) -> None:
    if type(student) is not int or not cfg.student_in_range(student):
        raise BadOrder(f"student {student!r:.20} is outside the configured range "
                       f"{cfg.students.min}..{cfg.students.max}")


def check_config_file(path: Path) -> None:
    """Only a configuration root controls may steer a root process."""
    st = path.stat()
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"{path} must be owned by root and writable by root only")


def _object(raw: bytes) -> dict[str, Any]:
    try:
        req = json.loads(raw)
    except ValueError:
        raise BadOrder("request is not JSON")
    if not isinstance(req, dict):
        raise BadOrder("request is not a JSON object")
    return req


def parse_request(cfg: Config, raw: bytes) -> dict[str, Any]:
    return check_request(cfg, _object(raw))


def check_request(cfg: Config, req: dict[str, Any]) -> dict[str, Any]:
    """A step request, every field checked (the student, the steps, the names)."""
    _check_student(cfg, req.get("student"))
    steps = req.get("steps")
    allowed = sorted(k.value for k in ROOT_KINDS)
    if not isinstance(steps, list) or not steps or \
            not all(isinstance(s, str) and s in allowed for s in steps):
        raise BadOrder(f"steps must be a list of {', '.join(allowed)}")
    parse_action(str(req.get("action", "")), internal=True)
    parse_workshop_name(str(req.get("workshop", "")))
    parse_customer(str(req.get("customer", "")))
    _check_password(cfg, req.get("password"))
    batch = req.get("batch")
    if batch is not None:
        if not isinstance(batch, list) or not 0 < len(batch) <= MAX_BATCH or \
                len(steps) != 1 or not all(isinstance(b, dict) for b in batch):
            raise BadOrder(f"batch must be 1 to {MAX_BATCH} students for one step")
        for b in batch:
            _check_student(cfg, b.get("student"))
            _check_password(cfg, b.get("password"))
    if "flags" in req:
        raise BadOrder("flags are not taken from the caller: wod.yml decides")
    names = req.get("compile", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadOrder("compile must be a list of script names")
    return req


def serve(cfg: Config, req: dict[str, Any]) -> dict[str, Any]:
    """Run the requested root steps for one student, in this (root) process."""
    order = Order(action=parse_action(req["action"], internal=True), students=(req["student"],),
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

    def student(number: int, password: Optional[str]) -> Student:
        st = Student.of(cfg, order, meta, number)
        return st if password is None else st.with_password(password)

    if req.get("batch") is not None:
        kind = StepKind(req["steps"][0])
        failures = steps.run_batch(host, [student(b["student"], b.get("password"))
                                          for b in req["batch"]], kind)
        return {"ok": True, "log": lines, "failures": {str(n): why for n, why in
                                                       failures.items() if why}}
    one = student(req["student"], req.get("password"))
    results: dict[str, Any] = {}
    for name in req["steps"]:
        results.update(steps.run(host, one, StepKind(name)))
    return {"ok": True, "log": lines, "results": results}


def main(argv: Optional[list[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "--config":
        sys.exit(_refuse(64, "usage: wod-backend-priv --config FILE < requests.jsonl"))
    if os.geteuid() != 0:
        sys.exit(_refuse(EX_NOPERM, "wod-backend-priv must run as root (through sudo)"))
    try:
        path = Path(args[1])
        check_config_file(path)
        cfg = config.load(str(path))
    except WodError as exc:
        sys.exit(_refuse(exc.exit_code, exc.reason))
    except OSError as exc:
        sys.exit(_refuse(EX_CONFIG, f"{exc.filename}: {exc.strerror}"))
    trusted: set[str] = set()
    code = 0
    while True:
        raw = sys.stdin.buffer.readline(MAX_REQUEST + 1)
        if not raw.strip():
            if not raw:
                sys.exit(code)  # the order is over: the last request's code
            continue
        if len(raw) > MAX_REQUEST:
            sys.exit(_refuse(EX_DATAERR, "request too large"))
        code = _serve_line(cfg, raw, trusted)
        if code == STOP:
            sys.exit(EX_CONFIG)  # what root relies on is not trustworthy: serve no more


STOP = -1


def pinned(cfg: Config, content: Any) -> Config:
    """The configuration with the content tree the order planned with: a root as
    configured, resolved, or one of its releases (`content update`), nothing else."""
    if content is None:
        return cfg
    if not isinstance(content, dict) or not set(content) <= {"public", "private"}:
        raise BadOrder("content must map public/private to a content root")
    changes = {}
    for origin, path in content.items():
        configured = getattr(cfg.content, origin)
        if configured is None or not isinstance(path, str):
            raise BadOrder(f"no {origin} content root configured")
        p = Path(path)
        if p in (configured, Path(os.path.realpath(configured))) or (
                p.parent == releases_dir(configured) and not p.name.startswith(".")
                and p.is_dir() and not p.is_symlink()):
            changes[origin] = p
        else:
            raise BadOrder(f"{path} is not the {origin} content root nor one of its releases")
    return dataclasses.replace(cfg, content=dataclasses.replace(cfg.content, **changes))


CONFINE = "(confine)"  # no workshop folder is named so: the trust check's code-only key


def _confine_request(cfg: Config, req: dict[str, Any]) -> Optional[list[int]]:
    """`{"confine": [N, ...]}` (sweep: the students' processes into their limits'
    groups), each number checked against the range; None for a step request."""
    if "confine" not in req:
        return None
    numbers = req["confine"]
    if set(req) != {"confine"} or not isinstance(numbers, list) or \
            not 0 < len(numbers) <= MAX_BATCH:
        raise BadOrder(f"confine takes 1 to {MAX_BATCH} student numbers and nothing else")
    for n in numbers:
        _check_student(cfg, n)
    return numbers


def _serve_line(cfg: Config, raw: bytes, trusted: set[str]) -> int:
    """Check and run one request; a refused or failed one is answered and the next one
    is checked afresh (a batch's other students go on). Its exit code, or STOP."""
    try:
        data = _object(raw)
        confine = _confine_request(cfg, data)
        if confine is not None:
            # Root relies on its code and configuration only (no workshop's content).
            why = helper_trust_report(cfg, CONFINE)
            if why:
                raise ConfigError(f"refusing to run as root: {why}")
            _answer({"ok": True, "log": [], "results": {"confined": {
                str(n): moved for n, moved in steps.confine(cfg, confine).items()}}})
            return 0
        req = check_request(cfg, data)
        folder = Order(parse_action(req["action"], internal=True), (), "0",
                       req["workshop"]).folder
        ordered = pinned(cfg, req.get("content"))
        key = f"{folder} {ordered.content.public} {ordered.content.private}"
        if key not in trusted:
            why = helper_trust_report(ordered, folder)
            if why:
                raise ConfigError(f"refusing to run as root: {why}")
            trusted.add(key)
        answer = serve(ordered, req)
    except ConfigError as exc:
        _refuse(exc.exit_code, exc.reason)
        return STOP
    except WodError as exc:
        return _refuse(exc.exit_code, exc.reason)
    except OSError as exc:
        return _refuse(EX_CONFIG, f"{exc.filename}: {exc.strerror}")
    except Exception as exc:  # one line, never a traceback into the caller's journal
        return _refuse(EX_SOFTWARE, f"internal error: {type(exc).__name__}")
    _answer(answer)
    return 0
