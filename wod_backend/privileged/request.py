"""What crosses to root's side: one typed request and its answer.

The same values whichever side runs them (privileged/root_side.py): in this process
when it may, else serialised as one JSON line to the sudo helper and checked there,
field by field, by `decode`, which trusts nothing the backend user wrote.
Only what the frontend may narrow travels with a step request: root takes everything
else that steers it (range, appliances, what to compile) from wod.yml itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

from wod_backend.config import Config
from wod_backend.errors import EX_OK, EX_SOFTWARE, BadOrder, WodError
from wod_backend.order import parse_action, parse_customer, parse_workshop_name
from wod_backend.planning.step_kinds import ROOT_KINDS, StepKind
from wod_backend.system import student_vars

if TYPE_CHECKING:
    from wod_backend.system.student import Student

MAX_BATCH = 1000
# What a batch's students end with, sent for all of them at once (one pass over /proc
# per step instead of one per student).
BATCH_TAIL = {"kill_processes", "wipe_home", "verify_home"}


@dataclass(frozen=True)
class StepsRequest:
    """Root steps for one student, or one step for a batch of students (one chpasswd)."""

    action: str
    student: int
    workshop: str
    customer: str
    password: Optional[str]
    steps: tuple[StepKind, ...]
    compile: tuple[str, ...] = ()
    batch: Optional[tuple[tuple[int, Optional[str]], ...]] = None  # (number, password)
    content: Optional[dict[str, str]] = None  # the content tree the order planned with
    variables: Optional[dict[str, Any]] = None  # the student's (system/student_vars.py)

    @classmethod
    def of(cls, st: "Student", kinds: list[StepKind], compile_names: tuple[str, ...],
           batch: Optional[list["Student"]] = None,
           content: Optional[dict[str, str]] = None) -> "StepsRequest":
        return cls(st.action, st.number, st.workshop, st.customer, st.password,
                   tuple(kinds), tuple(compile_names),
                   None if batch is None else tuple((b.number, b.password) for b in batch),
                   content, dict(st.private) if st.private and batch is None else None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action, "student": self.student, "workshop": self.workshop,
            "customer": self.customer, "password": self.password,
            "steps": [k.value for k in self.steps], "compile": list(self.compile)}
        if self.batch is not None:
            out["batch"] = [{"student": n, "password": p} for n, p in self.batch]
        if self.content:
            out["content"] = self.content
        if self.variables:
            out["variables"] = self.variables
        return out


@dataclass(frozen=True)
class ConfineRequest:
    """`sweep`: the students' processes moved into their limits' groups."""

    numbers: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"confine": list(self.numbers)}


@dataclass(frozen=True)
class DiskRequest:
    """`sweep`: the students' homes measured against the disk budget (root reads them)."""

    numbers: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"disk": list(self.numbers)}


Request = Union[StepsRequest, ConfineRequest, DiskRequest]


@dataclass(frozen=True)
class Answer:
    """What root's side did: its log lines, results (completion %, processes ended,
    the confined counts), a batch's failures by student, or why it refused."""

    ok: bool = True
    log: tuple[str, ...] = ()
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)
    error: Optional[str] = None
    exit_code: int = EX_OK

    @classmethod
    def refused(cls, code: int, reason: str) -> "Answer":
        return cls(ok=False, error=reason, exit_code=code)

    def raise_for_error(self) -> "Answer":
        if not self.ok:
            error = WodError(self.error or "privileged helper failed")
            error.exit_code = self.exit_code or EX_SOFTWARE
            raise error
        return self

    def to_json(self) -> dict[str, Any]:
        if not self.ok:
            return {"ok": False, "exit_code": self.exit_code, "error": self.error}
        return {"ok": True, "log": list(self.log), "results": self.results,
                "failures": {str(n): why for n, why in self.failures.items()}}

    @classmethod
    def from_json(cls, data: Any) -> "Answer":
        if not isinstance(data, dict):
            raise ValueError("not an answer")
        if not data.get("ok"):
            return cls.refused(int(data.get("exit_code", EX_SOFTWARE)),
                               str(data.get("error", "privileged helper failed")))
        failures = data.get("failures") or {}
        results = data.get("results") or {}
        return cls(log=tuple(str(x) for x in data.get("log", [])),
                   results=results if isinstance(results, dict) else {},
                   failures={int(n): str(why) for n, why in failures.items()})


def encode(request: Request) -> bytes:
    return json.dumps(request.to_json()).encode() + b"\n"


# -- root's side: every field checked, nothing the caller wrote trusted -----------------

def _check_password(cfg: Config, password: Any) -> Optional[str]:
    if password is not None and (
            not isinstance(password, str) or len(password) != cfg.passwords.length
            or not set(password) <= set(cfg.passwords.alphabet)):
        raise BadOrder("password does not follow the configured policy")
    return password


def _check_student(cfg: Config, student: Any) -> int:
    if type(student) is not int or not cfg.student_in_range(student):
        raise BadOrder(f"student {student!r:.20} is outside the configured range "
                       f"{cfg.students.min}..{cfg.students.max}")
    return student


def _object(raw: bytes) -> dict[str, Any]:
    try:
        req = json.loads(raw)
    except ValueError:
        raise BadOrder("request is not JSON")
    if not isinstance(req, dict):
        raise BadOrder("request is not a JSON object")
    return req


def decode(cfg: Config, raw: bytes) -> Request:
    """One request line as root reads it: a confine request (numbers in range, nothing
    else) or a step request (the student, the steps, the names, the passwords)."""
    req = _object(raw)
    for key, kind in (("confine", ConfineRequest), ("disk", DiskRequest)):
        if key in req:
            numbers = req[key]
            if set(req) != {key} or not isinstance(numbers, list) or \
                    not 0 < len(numbers) <= MAX_BATCH:
                raise BadOrder(f"{key} takes 1 to {MAX_BATCH} student numbers and nothing "
                               f"else")
            return kind(tuple(_check_student(cfg, n) for n in numbers))
    return _steps(cfg, req)


def _steps(cfg: Config, req: dict[str, Any]) -> StepsRequest:
    student = _check_student(cfg, req.get("student"))
    steps = req.get("steps")
    allowed = sorted(k.value for k in ROOT_KINDS)
    if not isinstance(steps, list) or not steps or \
            not all(isinstance(s, str) and s in allowed for s in steps):
        raise BadOrder(f"steps must be a list of {', '.join(allowed)}")
    action = parse_action(str(req.get("action", "")), internal=True).value
    workshop = parse_workshop_name(str(req.get("workshop", "")))
    customer = parse_customer(str(req.get("customer", "")))
    password = _check_password(cfg, req.get("password"))
    batch = req.get("batch")
    pairs = None
    if batch is not None:
        if not isinstance(batch, list) or not 0 < len(batch) <= MAX_BATCH or \
                not (len(steps) == 1 or set(steps) <= BATCH_TAIL) or \
                not all(isinstance(b, dict) for b in batch):
            raise BadOrder(f"batch must be 1 to {MAX_BATCH} students for one step (or an "
                           f"eviction's {', '.join(sorted(BATCH_TAIL))})")
        pairs = tuple((_check_student(cfg, b.get("student")),
                       _check_password(cfg, b.get("password"))) for b in batch)
    if "flags" in req:
        raise BadOrder("flags are not taken from the caller: wod.yml decides")
    names = req.get("compile", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadOrder("compile must be a list of script names")
    content = req.get("content")
    if content is not None and (not isinstance(content, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in content.items())):
        raise BadOrder("content must map public/private to a content root")
    variables = req.get("variables")
    if variables is not None:
        why = student_vars.check(variables)
        if why or len(json.dumps(variables)) > 65536:
            raise BadOrder(f"variables: {why or 'more than 64 KiB'}")
    return StepsRequest(action, student, workshop, customer, password,
                        tuple(StepKind(s) for s in steps), tuple(names), pairs, content,
                        variables)
