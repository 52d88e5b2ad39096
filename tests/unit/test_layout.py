"""The package's shape: dependencies point one way, no cycles, small modules and functions.

The import graph is parsed from the source, imports inside functions included (the
cycles this redesign removed existed only through those, so importing modules one by
one would not find them).
"""

from __future__ import annotations

import ast

from support.layout import PACKAGE, area, cycles, imports

# What each area may import besides itself (README, "Layout"). Down the order's path:
# cli -> intake -> planning / execution -> privileged -> system -> remote / state.
ALLOWED = {
    "package": {"cli"},  # __main__
    "top": {"top", "state"},  # logs writes its file in state_dir through state.files
    "cli": {"package", "top", "intake", "planning", "execution", "privileged", "system", "remote",
            "state", "ops"},
    "ops": {"top", "intake", "planning", "execution", "privileged", "system", "remote",
            "state"},
    "intake": {"top", "planning", "execution", "remote", "state"},
    "planning": {"top"},
    "execution": {"top", "planning", "privileged", "system", "remote", "state"},
    "privileged": {"top", "planning", "system"},
    "system": {"top", "planning", "state"},
    "remote": {"top"},
    "state": {"top"},
}
TOP_ALLOWED_FOR_LEAVES = {"wod_backend.config", "wod_backend.order", "wod_backend.errors"}


def test_no_import_cycles():
    assert cycles(imports()) == []


def test_dependencies_point_one_way():
    bad = []
    for module, deps in imports().items():
        for dep in deps:
            if area(dep) != area(module) and area(dep) not in ALLOWED[area(module)]:
                bad.append(f"{module} -> {dep}")
    assert bad == []


def test_state_and_remote_know_only_config_order_errors():
    """Besides their own package, state/ and remote/ import config, order and errors."""
    bad = [f"{m} -> {d}" for m, deps in imports().items() if area(m) in ("state", "remote")
           for d in deps if area(d) == "top" and d not in TOP_ALLOWED_FOR_LEAVES]
    assert bad == []


def test_planning_is_pure_and_privileged_never_needs_the_executor():
    graph = imports()
    for module, deps in graph.items():
        if area(module) == "planning":
            assert not {area(d) for d in deps} & {"remote", "system", "state"}, module
        if area(module) == "privileged":
            assert "execution" not in {area(d) for d in deps}, module


def test_no_sql_outside_state():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "state":
            continue
        text = path.read_text()
        if any(word in text for word in (".execute(", "executescript(", "CREATE TABLE")):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_modules_and_functions_stay_small():
    big_modules, big_functions = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if text.count("\n") > 350:
            big_modules.append(str(path.relative_to(PACKAGE)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.end_lineno - node.lineno + 1 > 50:
                    big_functions.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert big_modules == [] and big_functions == []


def test_the_layout_has_its_packages():
    packages = sorted(p.name for p in PACKAGE.iterdir()
                      if p.is_dir() and (p / "__init__.py").exists())
    assert packages == ["cli", "execution", "intake", "ops", "planning", "privileged",
                        "remote", "state", "system"]
