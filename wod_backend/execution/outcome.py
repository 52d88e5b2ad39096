"""What became of an order: a value the CLI prints as text (cli/render.py) or JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from wod_backend.errors import EX_OK
from wod_backend.planning.plan import Plan

# Called before each student of a batch: (position, total, user name).
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Result:
    """What became of an order: printed as text or JSON by the CLI."""

    outcome: str
    exit_code: int = EX_OK
    order: Optional[dict[str, Any]] = None
    plan: Optional[Plan] = None
    reason: Optional[str] = None
    journal_id: Optional[int] = None
    students: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.plan.as_dict() if self.plan else self.order or {})
        out.update(outcome=self.outcome, reason=self.reason, journal_id=self.journal_id)
        if self.students:
            out["results"] = self.students
        return out
