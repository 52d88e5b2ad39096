"""The step vocabulary: every kind has exactly one handler, and the sudo helper accepts
exactly the kinds that need root."""

from __future__ import annotations

import json

import pytest

from support.content import make_workshop
from wod_backend.execution.executor import HANDLERS
from wod_backend.intake.pipeline import order_from_args
from wod_backend.planning.catalog import Catalog
from wod_backend.planning.plan import make_plan
from wod_backend.planning.step_kinds import ROOT_KINDS, SPECS, StepKind
from wod_backend.errors import BadOrder
from wod_backend.privileged import request
from wod_backend.system import root_steps


def test_every_kind_has_a_spec_and_one_handler():
    assert set(SPECS) == set(StepKind)
    user_kinds = set(HANDLERS) | {StepKind.REPORT_CAPACITY}  # once per order: final step
    assert user_kinds.isdisjoint(root_steps.HANDLERS)
    assert user_kinds | set(root_steps.HANDLERS) == set(StepKind)
    assert set(root_steps.HANDLERS) == ROOT_KINDS


def test_every_root_kind_is_allowed_by_the_helper_and_nothing_else(demo_cfg):
    base = {"action": "CREATE", "student": 1, "workshop": "WKSHP-API101", "customer": "0"}
    for kind in StepKind:
        raw = json.dumps({**base, "steps": [kind.value]}).encode()
        if kind in ROOT_KINDS:
            assert request.decode(demo_cfg, raw).steps == (kind,)
        else:
            with pytest.raises(BadOrder, match="steps must be a list of"):
                request.decode(demo_cfg, raw)


@pytest.mark.parametrize("action, students", [("CREATE", "3"), ("CLEANUP", "3"),
                                              ("RESET", "3-5"), ("PURGE", "3")])
def test_plans_use_only_known_kinds_and_root_kinds_only_with_accounts(site, action, students):
    make_workshop(site.public, "WKSHP-Kinds", "name: k\nreset: true\n")
    site.hook(site.hooks_public, "scripts/reset-WKSHP-Kinds.sh", "true\n")
    cfg = site.load()
    plan = make_plan(cfg, Catalog(cfg), order_from_args(cfg, action, "WKSHP-Kinds",
                                                         students, "0"))
    kinds = {st.kind for sp in plan.students for st in sp.steps}
    assert kinds <= set(StepKind)
    # without managed accounts, no step that needs an account runs as root
    assert not kinds & {StepKind.ENSURE_ACCOUNT, StepKind.SET_LINUX_PASSWORD,
                        StepKind.KILL_PROCESSES}
