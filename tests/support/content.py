"""Workshop content for tests: minimal notebooks, workshop folders, a test site."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def notebook(*cells: tuple[str, str]) -> str:
    """A minimal nbformat-4 notebook of (cell_type, source) pairs."""
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

    def load(self) -> Any:
        from wod_backend import config

        return config.load(str(self.config))
