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

Requests and answers are the typed values of privileged/request.py (decoded and checked
here); the caller's side is privileged/client.py, one implementation of
privileged/root_side.py's interface. The steps run through root_side.serve and
system/root_steps.py, as they do in-process: this program never needs the executor.
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
from wod_backend.order import Order, parse_action
from wod_backend.planning.catalog import Catalog, releases_dir
from wod_backend.privileged.request import (Answer, ConfineRequest, DiskRequest,
                                            StepsRequest, decode)
from wod_backend.privileged.root_side import serve, sweep_answer
from wod_backend.system.student import Host
from wod_backend.system.trust import helper_trust_report

MAX_REQUEST = 1 << 20  # a batch of 1,000 students is ~50 KB


def _answer(answer: Answer) -> None:
    sys.stdout.write(json.dumps(answer.to_json()) + "\n")
    sys.stdout.flush()


def _refuse(code: int, reason: str) -> int:
    _answer(Answer.refused(code, reason))
    return code


def check_config_file(path: Path) -> None:
    """Only a configuration root controls may steer a root process."""
    st = path.stat()
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(f"{path} must be owned by root and writable by root only")


def serve_steps(cfg: Config, req: StepsRequest) -> Answer:
    """A step request, in this (root) process: wod.yml in the root-owned content tree
    decides (root_side.serve narrows only what is compiled)."""
    folder = Order(parse_action(req.action, internal=True), (), "0", req.workshop).folder
    catalog = Catalog(cfg)
    ws = catalog.get(folder)
    lines: list[str] = []
    answer = serve(Host(cfg, ws, catalog.meta(ws), lines.append), req)
    return dataclasses.replace(answer, log=tuple(lines))


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


def _serve_line(cfg: Config, raw: bytes, trusted: set[str]) -> int:
    """Check and run one request; a refused or failed one is answered and the next one
    is checked afresh (a batch's other students go on). Its exit code, or STOP."""
    try:
        req = decode(cfg, raw)
        if isinstance(req, (ConfineRequest, DiskRequest)):
            # Root relies on its code and configuration only (no workshop's content).
            why = helper_trust_report(cfg, CONFINE)
            if why:
                raise ConfigError(f"refusing to run as root: {why}")
            _answer(sweep_answer(cfg, req))
            return 0
        folder = Order(parse_action(req.action, internal=True), (), "0", req.workshop).folder
        ordered = pinned(cfg, req.content)
        key = f"{folder} {ordered.content.public} {ordered.content.private}"
        if key not in trusted:
            why = helper_trust_report(ordered, folder)
            if why:
                raise ConfigError(f"refusing to run as root: {why}")
            trusted.add(key)
        answer = serve_steps(ordered, req)
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
