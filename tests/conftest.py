"""Shared fixtures: a demo configuration in tmp_path, the CLI in-process and as a process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from support.cli import DATA, REPO, WOD, CliResult, invoke, run_wod  # noqa: F401  (re-exported)

def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A demo configuration (no root, no server) rooted in tmp_path; returns its path."""
    from wod_backend.ops.demo import write_demo_config

    return write_demo_config(str(tmp_path / "demo"))


@pytest.fixture
def demo_cfg(demo: Path):
    from wod_backend import config

    return config.load(str(demo))


def notebook(*cells: tuple[str, str]) -> str:
    """A minimal nbformat-4 notebook of (cell_type, source) pairs."""
    import json

    out = []
    for kind, src in cells:
        cell = {"cell_type": kind, "metadata": {}, "source": src.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return json.dumps({"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def make_workshop(root: Path, folder: str, meta: str = "name: Test\n",
                  files: dict[str, str | bytes] | None = None) -> Path:
    """A workshop folder with 0-ReadMeFirst.ipynb, a wod.yml and extra files."""
    ws = root / folder
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "wod.yml").write_text(meta)
    files = {"0-ReadMeFirst.ipynb": notebook(("markdown", "# {{ WORKSHOP }} {{ STDID }}")),
             **(files or {})}
    for rel, data in files.items():
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return ws


@dataclass
class Site:
    """A demo-like configuration over content and hooks trees the test writes."""

    root: Path
    public: Path
    private: Path
    hooks_public: Path
    hooks_private: Path
    config: Path

    def hook(self, tree: Path, rel: str, text: str) -> Path:
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def load(self):  # type: ignore[no-untyped-def]
        from wod_backend import config

        return config.load(str(self.config))


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
variables: {{BRANDING: Test}}
""")
    return Site(root, dirs["public"], dirs["private"], dirs["hooks-public"],
                dirs["hooks-private"], cfg)
