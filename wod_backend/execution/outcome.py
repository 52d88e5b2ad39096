"""What became of an order: a value the CLI prints as text (cli/render.py) or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from wod_backend.errors import EX_OK
from wod_backend.order import Order
from wod_backend.planning.plan import Plan

# Called before each student of a batch: (position, total, user name).
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class StudentResult:
    """What became of one student of an order (student None: the order's final steps)."""

    student: Optional[int]
    outcome: str  # done | failed
    reason: Optional[str] = None
    exit_code: int = EX_OK

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"student": self.student, "outcome": self.outcome}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class Result:
    """What became of an order (pipx's OperationResult, ansible-runner's status and rc):
    printed as text or JSON by the CLI."""

    outcome: str
    exit_code: int = EX_OK
    order: Optional[Order] = None
    plan: Optional[Plan] = None
    reason: Optional[str] = None
    journal_id: Optional[int] = None
    students: list[StudentResult] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.plan.as_dict() if self.plan else
                                   self.order.summary() if self.order else {})
        out.update(outcome=self.outcome, reason=self.reason, journal_id=self.journal_id)
        if self.students:
            out["results"] = [s.as_dict() for s in self.students]
        return out
