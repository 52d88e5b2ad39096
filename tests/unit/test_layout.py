"""The package's shape: dependencies point one way, no cycles, small modules and functions.

The import graph is parsed from the source, imports inside functions included (the
cycles this redesign removed existed only through those, so importing modules one by
one would not find them).
"""

from __future__ import annotations

import ast

from support.layout import PACKAGE, area, cycles, imports

# What each area may import besides itself (README, "Layout"). One job per folder: the
# CLI on top; setting up the host, the students' lifecycle, the views and content tools,
# and the resident worker beside each other (host may ask doctor's questions of ops
# and start the worker); then down the order's path: intake -> planning / execution ->
# privileged -> system -> remote / state; config at the bottom.
ORDER_PATH = {"top", "config", "intake", "planning", "execution", "privileged", "system",
              "remote", "state"}
ALLOWED = {
    "package": {"cli"},  # __main__
    "top": {"top", "state", "config"},  # logs writes its file in state_dir (state.files)
    "cli": {"package", "worker", "host", "lifecycle", "ops"} | ORDER_PATH,
    "worker": ORDER_PATH,
    "host": {"ops", "worker", "lifecycle"} | ORDER_PATH,  # report: reconcile's findings
    "lifecycle": ORDER_PATH,
    "ops": ORDER_PATH,
    "intake": {"top", "config", "planning", "execution", "remote", "state"},
    "planning": {"top", "config"},
    "execution": {"top", "config", "planning", "privileged", "system", "remote", "state"},
    "privileged": {"top", "config", "planning", "system"},
    "system": {"top", "config", "planning", "state"},
    "remote": {"top", "config"},
    "state": {"top", "config"},
    "config": {"top"},
}
TOP_ALLOWED_FOR_LEAVES = {"wod_backend.order", "wod_backend.errors"}


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
           for d in deps if area(d) == "top" and d not in TOP_ALLOWED_FOR_LEAVES
           or area(d) == "config" and d != "wod_backend.config"]
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
    assert packages == ["cli", "config", "execution", "host", "intake", "lifecycle", "ops",
                        "planning", "privileged", "remote", "state", "system", "worker"]


def test_one_way_to_run_a_program():
    """subprocess only in system/run.py: every other module runs programs through its
    `run` (a value, a timeout) or `start` (what outlives the call)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).as_posix() == "system/run.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "subprocess" for n in names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_no_two_modules_share_a_basename():
    seen: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.name, []).append(str(path.relative_to(PACKAGE)))
    assert {name: where for name, where in seen.items() if len(where) > 1} == {}


def test_no_private_name_is_imported_across_modules():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "wod_backend"):
                bad += [f"{path.relative_to(PACKAGE)}: {node.module}.{a.name}"
                        for a in node.names if a.name.startswith("_")
                        and a.name != "__version__"]
    assert bad == []
