"""Notebook delivery: the workshop folder, rendered, into `<home>/<workshop>`.

Templates (docs/content.md) are all rendered in memory first, so a content defect
stops the delivery before the home is touched; then the tree is written through the
link-safe writer of `homes.py`, templates from memory and everything else (pictures,
data) copied byte for byte. JupyterLab gets a workspace that opens 0-ReadMeFirst.ipynb,
and the notebook a checkpoint copy so that "revert" works from the first minute.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from wod_backend.system import templating
from wod_backend.system.homes import copy_tree, open_home

README = "0-ReadMeFirst.ipynb"
WORKSPACE_DIR = (".jupyter", "lab", "workspaces")
WORKSPACE_FILE = "default-37a8.jupyterlab-workspace"


# Workshop metadata stays on the backend: it is not the participant's business.
NOT_DELIVERED = frozenset({"wod.yml"})


def render_templates(src: Path, context: Mapping[str, Any]) -> dict[str, bytes]:
    """relpath -> rendered bytes for every template file of the workshop folder."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink() or not templating.is_template(name):
                continue
            rel = str(path.relative_to(src))
            out[rel] = templating.render_file(name, path.read_bytes(), context,
                                              f"{src.name}/{rel}")
    return out


def workspace(target: str) -> bytes:
    nb = f"{target}/{README}"
    data = {"data": {
        "layout-restorer:data": {"main": {
            "dock": {"type": "tab-area", "currentIndex": 0, "widgets": [f"notebook:{nb}"]},
            "current": f"notebook:{nb}"}},
        f"notebook:{nb}": {"data": {"path": nb, "factory": "Notebook"}},
        "file-browser-filebrowser:cwd": {"path": target}},
        "metadata": {"id": "default"}}
    return (json.dumps(data, indent=1) + "\n").encode()


def deliver(src: Path, rendered: dict[str, bytes], home: Path, target: str,
            uid: Optional[int], gid: Optional[int], home_mode: int = 0o700,
            tools: Optional[dict[str, bytes]] = None) -> int:
    """Deliver workshop folder `src` as `<home>/<target>`, templates from `rendered`
    (see render_templates), and `tools` (name: script, mode 0755) into it; returns the
    number of files written."""
    with open_home(home, uid, gid, home_mode) as h:
        h.remove(target)
        with h.subdir(target) as dst:
            count = copy_tree(src, dst, lambda rel, _p: rendered.get(rel), NOT_DELIVERED)
            for name, script in (tools or {}).items():
                dst.write(name, script, 0o755)
            if README in rendered:
                with dst.subdir(".ipynb_checkpoints") as cp:
                    cp.write(README.replace(".ipynb", "-checkpoint.ipynb"), rendered[README])
        d = h
        subs = []
        try:
            for part in WORKSPACE_DIR:
                d = d.subdir(part, 0o755)
                subs.append(d)
            d.write(WORKSPACE_FILE, workspace(target))
        finally:
            for s in subs:
                s.close()
    return count
