"""Root's side of an order, behind one interface with two implementations.

`root_side(cfg, ...)` chooses once per order (or per sweep): `InProcess` when this
process may do root's steps itself (it is root, or no Linux accounts are managed),
else the sudo helper (privileged/client.py's `SudoHelper`), which gets the same
request values as JSON lines and checks each one (privileged/request.py). Both run a
step request through `serve`, so what root does is the same code either way.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Protocol

from wod_backend.config import Config
from wod_backend.errors import BadOrder
from wod_backend.order import Order, parse_action
from wod_backend.planning.step_kinds import StepKind
from wod_backend.privileged.request import (Answer, ConfineRequest, DiskRequest, Request,
                                            StepsRequest)
from wod_backend.system import root_steps
from wod_backend.system.student import Host, Student


class RootSide(Protocol):
    # Whether a group of consecutive root steps goes as one request (the helper: one
    # round trip) or each step alone (in this process: each step timed in the journal).
    groups_steps: bool

    def ask(self, request: Request) -> Answer: ...

    def close(self) -> None: ...


def serve(host: Host, req: StepsRequest) -> Answer:
    """Run a step request on this host, as root. The host's workshop metadata comes
    from the root-owned wod.yml; the request may only narrow what is compiled."""
    order = Order(action=parse_action(req.action, internal=True), students=(req.student,),
                  customer=req.customer, workshop=req.workshop, source="sudo")
    extra = [n for n in req.compile if n not in host.meta.compile]
    if extra:
        raise BadOrder(f"script {extra[0]} is not in the compile list of "
                       f"{order.folder}'s wod.yml")
    meta = dataclasses.replace(host.meta, compile=tuple(
        n for n in host.meta.compile if n in req.compile))
    run_host = host if meta == host.meta else dataclasses.replace(host, meta=meta)

    def student(number: int, password: Optional[str]) -> Student:
        st = Student.of(host.cfg, order, meta, number)
        return st if password is None else st.with_password(password)

    if req.batch is not None:
        failures = root_steps.run_batch(run_host, [student(n, p) for n, p in req.batch],
                                        list(req.steps))
        return Answer(failures={n: why for n, why in failures.items() if why})
    one = student(req.student, req.password)
    if req.variables:
        one = one.with_private(req.variables)
    results: dict = {}
    for kind in req.steps:
        results.update(root_steps.run(run_host, one, StepKind(kind)))
    return Answer(results=results)


def sweep_answer(cfg: Config, req: "ConfineRequest | DiskRequest") -> Answer:
    """What the sweep asks of root: its students' processes into their groups, or their
    homes measured against the disk budget."""
    if isinstance(req, DiskRequest):
        return Answer(results={"disk": {str(n): v for n, v in root_steps.disk(
            cfg, list(req.numbers)).items()}})
    return Answer(results={"confined": {str(n): moved for n, moved in root_steps.confine(
        cfg, list(req.numbers)).items()}})


class InProcess:
    """Root's steps in this process (it is root, or manages no accounts)."""

    groups_steps = False

    def __init__(self, cfg: Config, host: Optional[Host] = None):
        self.cfg, self.host = cfg, host

    def ask(self, request: Request) -> Answer:
        if isinstance(request, (ConfineRequest, DiskRequest)):
            return sweep_answer(self.cfg, request)
        assert self.host is not None, "a step request needs the order's host"
        return serve(self.host, request)

    def close(self) -> None:
        pass


def root_side(cfg: Config, host: Optional[Host] = None,
              content: Optional[dict[str, str]] = None) -> RootSide:
    """The one choice between this process and root's helper (privileged.mode): the
    resident one when it runs (privileged.resident), else through sudo."""
    from wod_backend.privileged.client import ResidentHelper, SudoHelper, use_sudo

    if use_sudo(cfg):
        if cfg.privileged.resident:
            return ResidentHelper(cfg, content)
        return SudoHelper(cfg, content)
    return InProcess(cfg, host)
