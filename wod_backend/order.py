"""Orders: what the frontend (by mail) or an admin (by CLI) asks for, validated.

Pure code: parsing and validating an order needs the configuration and the content
catalog, nothing else. Liberal in the forms accepted (`12`, `student12`, `3,6`, `3-6`),
strict in what is acted on: ASCII digits only, no leading zeros, numbers in the
configured range, a workshop name from a fixed alphabet that exists in the catalog.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from wod_backend.errors import BadOrder


class Action(str, enum.Enum):
    CREATE = "CREATE"
    CLEANUP = "CLEANUP"
    RESET = "RESET"
    PURGE = "PURGE"
    # The backend's own, never taken from a mail: `sweep` ending an abuse (server
    # stopped, new password, processes ended, the home kept for its CLEANUP).
    EVICT = "EVICT"


ORDERABLE = ("CREATE", "CLEANUP", "RESET", "PURGE")  # what a mail or a command may ask


class Mode(str, enum.Enum):
    WKSHP = "WKSHP"
    CHLG = "CHLG"


# re.ASCII: \d would otherwise accept Arabic-Indic or fullwidth digits.
_STUDENT = re.compile(r"(?:student)?(0|[1-9][0-9]{0,8})", re.ASCII | re.IGNORECASE)
_RANGE = re.compile(r"(0|[1-9][0-9]{0,8})\s*([,-])\s*(0|[1-9][0-9]{0,8})", re.ASCII)
_CUSTOMER = re.compile(r"0|[1-9][0-9]{0,11}", re.ASCII)
WORKSHOP_NAME = re.compile(r"(WKSHP|CHLG)-([A-Za-z0-9][A-Za-z0-9_-]{0,62})", re.ASCII)


@dataclass(frozen=True)
class Order:
    action: Action
    students: tuple[int, ...]
    customer: str
    workshop: str  # as ordered: WKSHP-X or CHLG-X
    source: str = "cli"  # "mail" or "cli"
    is_range: bool = False
    message_id: Optional[str] = None
    subject: str = ""
    extra: tuple[str, ...] = field(default=())

    @property
    def mode(self) -> Mode:
        return Mode.CHLG if self.workshop.startswith("CHLG-") else Mode.WKSHP

    @property
    def folder(self) -> str:
        return folder_of(self.workshop)

    def summary(self) -> dict:
        return {"action": self.action.value, "students": list(self.students),
                "customer": self.customer, "workshop": self.workshop,
                "mode": self.mode.value}


def folder_of(workshop: str) -> str:
    """The content folder of an ordered workshop: a CHLG-X challenge uses WKSHP-X's."""
    return "WKSHP-" + workshop.split("-", 1)[1]


def user_name(n: int) -> str:
    """Student number N is Linux and JupyterHub user `studentN` (docs/protocol.md,
    "Student numbers")."""
    return f"student{n}"


@dataclass(frozen=True)
class Seat:
    """Where student N is on this backend, derived here and nowhere else: the user,
    the home, the uid (= gid) and the frontend's database id."""

    number: int
    user: str
    home: Path
    uid: int
    dbid: int

    @classmethod
    def of(cls, students: Any, number: int) -> "Seat":
        """`students`: the configuration's students section."""
        user = user_name(number)
        return cls(number, user, Path(students.home_root) / user,
                   students.uid_base + number, number + students.base_id)


def parse_action(text: str, internal: bool = False) -> Action:
    """An orderable action; with `internal` (the journal's, the helper's) also EVICT."""
    word = text.strip().upper()
    if word not in (Action.__members__ if internal else ORDERABLE):
        raise BadOrder(f"unknown action {text[:40]!r} (expected CREATE, CLEANUP, RESET "
                       f"or PURGE)")
    return Action[word]


def parse_students(text: str, min_n: int, max_n: int) -> tuple[tuple[int, ...], bool]:
    """`N`, `studentN`, `N,M` or `N-M` -> (numbers, is_range), all inside [min_n, max_n]."""
    text = text.strip()
    m = _STUDENT.fullmatch(text)
    if m:
        first = last = int(m.group(1))
        is_range = False
    else:
        m = _RANGE.fullmatch(text)
        if not m:
            raise BadOrder(f"bad student number {text[:40]!r} (expected N, studentN, "
                           f"N,M or N-M with ASCII digits)")
        first, last = int(m.group(1)), int(m.group(3))
        is_range = True
        if first > last:
            raise BadOrder(f"bad student range {text}: min {first} > max {last}")
    for n in (first, last):
        if not min_n <= n <= max_n:
            raise BadOrder(f"student {n} out of range {min_n}..{max_n}")
    return tuple(range(first, last + 1)), is_range


def parse_customer(text: str) -> str:
    text = text.strip()
    if not _CUSTOMER.fullmatch(text):
        raise BadOrder(f"bad customer id {text[:40]!r} (expected a number)")
    return text


def parse_workshop_name(text: str) -> str:
    text = text.strip()
    if not WORKSHOP_NAME.fullmatch(text):
        shown = text[:60].encode("unicode_escape").decode("ascii")
        raise BadOrder(f"bad workshop name '{shown}' (expected WKSHP-<name> or "
                       f"CHLG-<name>, letters, digits, - and _)")
    return text
