"""The package's import graph, parsed from the source (imports inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

from support.cli import REPO

PACKAGE = REPO / "wod_backend"
TOP = ("errors", "order", "logs")
LAYERS = ("cli", "worker", "host", "lifecycle", "ops", "intake", "planning", "execution",
          "privileged", "system", "remote", "state", "config")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports() -> dict[str, set[str]]:
    """module -> the package modules it imports (`from pkg import mod` resolved)."""
    names = {module_name(p) for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        me = module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("wod_backend"))
            elif isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("wod_backend"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in names else node.module)
        graph[me] = {m for m in found if m in names and m != me}
    return graph


def area(module: str) -> str:
    """'top' for the package's own top-level modules, else the layer's name."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "package"
    return parts[1] if parts[1] in LAYERS else "top"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out
