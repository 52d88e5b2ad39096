"""Shared fixtures: a demo configuration in tmp_path, a test site of content and hooks.

Helpers live in tests/support; test modules import from there, never from each other.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.content import Site


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A demo configuration (no root, no server) rooted in tmp_path; returns its path."""
    from wod_backend.host.demo import write_demo_config

    return write_demo_config(str(tmp_path / "demo"))


@pytest.fixture
def demo_cfg(demo: Path):
    from wod_backend import config

    return config.load(str(demo))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    root = tmp_path / "site"
    dirs = {k: root / k for k in ("public", "private", "hooks-public", "hooks-private")}
    for d in dirs.values():
        d.mkdir(parents=True)
    (root / "homes").mkdir()
    cfg = root / "config.yml"
    cfg.write_text(f"""
students: {{min: 1, max: 40, home_root: {root}/homes, manage_accounts: false}}
content: {{public: {dirs['public']}, private: {dirs['private']}}}
hooks: {{public: {dirs['hooks-public']}, private: {dirs['hooks-private']}, timeout: 5}}
ansible: {{timeout: 120}}
state_dir: {root}/state
backups: {{dir: {root}/backups}}
variables: {{BRANDING: Test}}
""")
    return Site(root, dirs["public"], dirs["private"], dirs["hooks-public"],
                dirs["hooks-private"], cfg)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Under CI=true a skip is a failure: a missing tool (chromium, nft, postfix...) must
    fail the run, never pass it unnoticed; scripts/install-deps --test installs them."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true: {report.longrepr}"
