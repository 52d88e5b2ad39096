"""`wod-backend expire`: the backend's own CLEANUP for a workshop that outlived itself.

The frontend's expiry path has been seen to crash, and then no CLEANUP is ever mailed:
the student would keep a shell, a server and a password for good. With
`students.expiry_grace` set (hours), a student whose last order is a CREATE (or an
EVICT after one) older than the workshop's `duration` plus the grace, and who got no
CLEANUP since, is cleaned up by the backend: a CLEANUP order of the same customer and
workshop (journaled, source `expire`), with every report a mailed CLEANUP sends
(completion, password, student free, customer cleaned). It runs from the schedule
beside `sweep`; without expiry_grace it does nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from wod_backend.config import Config
from wod_backend.errors import WodError
from wod_backend.state.seats import FINISHED
from wod_backend.order import Action, Order, folder_of
from wod_backend.planning.catalog import Catalog
from wod_backend.state import journal as jr

@dataclass(frozen=True)
class Expired:
    student: int
    customer: str
    workshop: str
    since: float  # the CREATE's (or EVICT's) time
    hours: float  # the workshop's duration plus the grace
    outcome: str = ""


def due(cfg: Config, now: float) -> list[Expired]:
    """The students past their workshop's duration plus the grace."""
    grace = cfg.students.expiry_grace
    if grace is None:
        return []
    journal = jr.Journal(cfg.state_dir)
    last = journal.last_orders(range(cfg.students.min, cfg.students.max + 1))
    catalog = Catalog(cfg)
    out = []
    for n, e in sorted(last.items()):
        if e.action not in ("CREATE", "EVICT") or e.outcome not in FINISHED or \
                not e.workshop or e.customer is None:
            continue
        try:
            duration = catalog.meta(catalog.get(folder_of(e.workshop))).duration
        except (WodError, IndexError):
            continue  # the workshop is gone from the catalog: nothing to plan with
        hours = duration + grace
        if now - e.received >= hours * 3600:
            out.append(Expired(n, e.customer, e.workshop, e.received, hours))
    return out


def expire(cfg: Config, dry_run: bool = False) -> list[Expired]:
    from wod_backend.intake.pipeline import from_backend

    done = []
    for x in due(cfg, time.time()):
        if dry_run:
            done.append(x)
            continue
        order = Order(Action.CLEANUP, (x.student,), x.customer, x.workshop,
                      source="expire")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(x.since))
        evidence = (f"expire: {x.workshop} ordered {when}, past its duration plus "
                    f"students.expiry_grace ({x.hours:g} h) without a CLEANUP")
        try:
            outcome = from_backend(cfg, order, "expire", [evidence]).outcome
        except WodError as exc:
            outcome = f"failed: {exc.reason}"
        done.append(Expired(x.student, x.customer, x.workshop, x.since, x.hours, outcome))
    return done
