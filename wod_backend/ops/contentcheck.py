"""`workshops check`: find content defects before a participant does.

Each workshop folder is read the way delivery would read it: metadata types, the
mandatory `0-ReadMeFirst.ipynb`, notebooks that are not valid JSON, templates that do
not compile, variables that no configuration provides (rendered in both WKSHP and
CHLG modes), reset workshops without a reset hook.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from wod_backend.system import templating
from wod_backend.system.student import Student
from wod_backend.planning.appliances import base_address, needs_appliance
from wod_backend.planning.catalog import (META_FILE, Catalog, Workshop, WorkshopMeta,
                                          load_yaml_file, workshop_variables)
from wod_backend.planning.meta import parse_meta
from wod_backend.config import Config
from wod_backend.errors import ConfigError, UsageError
from wod_backend.planning.hooks import Phase, find_hooks, hook_roots
from wod_backend.ops import kernels

README_NOTEBOOK = "0-ReadMeFirst.ipynb"


@dataclass(frozen=True)
class Problem:
    workshop: str
    path: str
    message: str
    severity: str = "error"  # or "warning"

    def as_dict(self) -> dict[str, str]:
        return {"workshop": self.workshop, "path": self.path, "message": self.message,
                "severity": self.severity}


def _check_templates(cfg: Config, ws: Workshop, variables: dict,
                     appliance: Optional[str]) -> list[Problem]:
    problems = []
    try:
        contexts = [Student.sample(cfg, ws.folder, mode, appliance).template_context(
                    variables, cfg.inventory_hostname) for mode in ("WKSHP", "CHLG")]
    except templating.TemplateFailure as exc:
        return [Problem(ws.folder, f"variables_{ws.folder}.yml", exc.reason)]
    for dirpath, dirnames, filenames in os.walk(ws.path):
        dirnames[:] = sorted(d for d in dirnames if d != ".ipynb_checkpoints")
        for name in sorted(filenames):
            path = Path(dirpath, name)
            rel = str(path.relative_to(ws.path))
            if not templating.is_template(name):
                continue
            try:
                data = path.read_bytes()
                for ctx in contexts:
                    templating.render_file(name, data, ctx, rel)
            except templating.TemplateFailure as exc:
                problems.append(Problem(ws.folder, rel, exc.reason.split(": ", 1)[-1]))
            except OSError as exc:
                problems.append(Problem(ws.folder, rel, f"unreadable: {exc.strerror}"))
    return problems


def _check_automation(cfg: Config, ws: Workshop, meta: WorkshopMeta) -> list[Problem]:
    problems = []
    if meta.reset and not find_hooks(cfg, ws.folder, Phase.RESET):
        problems.append(Problem(ws.folder, META_FILE, "flagged reset but has no reset hook"))
    if needs_appliance(meta):
        try:
            base_address(cfg, ws.folder)
        except ConfigError as exc:
            problems.append(Problem(ws.folder, META_FILE, exc.reason))
    roots = [root for _origin, root in hook_roots(cfg)]
    for name in meta.compile:
        if not any((root / "scripts" / name).is_file() for root in roots):
            problems.append(Problem(ws.folder, META_FILE, f"script {name} to compile is in "
                                    f"no hooks tree's scripts/"))
    return problems


def _check_kernels(ws: Workshop, served: Optional[set[str]]) -> list[Problem]:
    """Each notebook whose kernel the managed hub lacks (it would open on "No Kernel")."""
    if served is None:
        return []
    return [Problem(ws.folder, str(path.relative_to(ws.path)), f"kernel {name!r} is not on "
                    f"the managed hub (add it to jupyterhub.kernels)")
            for path, name in kernels.lacking(ws.path, served)]


def check_workshop(cfg: Config, catalog: Catalog, ws: Workshop,
                   served: Optional[set[str]] = None) -> list[Problem]:
    problems: list[Problem] = _check_kernels(ws, served)
    meta_path = ws.path / META_FILE
    meta = None
    if not meta_path.is_file():
        problems.append(Problem(ws.folder, META_FILE, "missing workshop metadata"))
    else:
        try:
            meta, defects = parse_meta(ws.folder, load_yaml_file(meta_path))
            problems += [Problem(ws.folder, META_FILE, msg) for msg in defects]
            if meta is not None:
                if meta.unknown_keys:
                    problems.append(Problem(ws.folder, META_FILE, "unknown keys ignored: "
                                            + ", ".join(meta.unknown_keys), "warning"))
        except ConfigError as exc:
            problems.append(Problem(ws.folder, META_FILE, exc.reason))
        except Exception as exc:
            problems.append(Problem(ws.folder, META_FILE, f"not valid YAML: "
                                    f"{str(exc).splitlines()[0][:100]}"))
    if not (ws.path / README_NOTEBOOK).is_file():
        problems.append(Problem(ws.folder, README_NOTEBOOK, "missing: it is the notebook "
                                "participants open first"))
    if ws.shadowed:
        problems.append(Problem(ws.folder, ".", "exists in public and private content; "
                                "the public copy is delivered", "warning"))
    if meta is not None:
        problems += _check_automation(cfg, ws, meta)
    try:
        variables = workshop_variables(cfg, catalog, ws.folder)
    except ConfigError as exc:
        problems.append(Problem(ws.folder, f"variables_{ws.folder}.yml", exc.reason))
        return problems
    needs_appliance = meta is not None and (meta.monoappliance or meta.multiappliance)
    appliance = "192.0.2.1" if needs_appliance else None
    return problems + _check_templates(cfg, ws, variables, appliance)


def check(cfg: Config, name: Optional[str] = None) -> list[Problem]:
    catalog = Catalog(cfg)
    if name:
        folder = name if name.startswith("WKSHP-") else "WKSHP-" + name.split("-", 1)[-1]
        ws = catalog.find(folder)
        if ws is None:
            raise UsageError(f"unknown workshop {name}")
        return check_workshop(cfg, catalog, ws, kernels.hub_kernels(cfg))
    problems: list[Problem] = []
    served = kernels.hub_kernels(cfg)
    for ws in catalog.all():
        problems += check_workshop(cfg, catalog, ws, served)
    return problems
