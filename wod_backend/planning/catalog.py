"""The workshop catalog: which workshops exist, where, and their `wod.yml` metadata.

A workshop is a folder `WKSHP-<Name>/` under the public or the private content root.
The public one wins when both have it (reference behaviour: private content fills in
for what the public repo lacks). Lookups only ever join a validated name to a root and
check the result is a real directory inside it, so no name can escape the tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from wod_backend.config import Config
from wod_backend.errors import BadOrder, ConfigError
from wod_backend.planning.meta import WorkshopMeta
from wod_backend.planning.meta import parse_meta as _parse_meta
from wod_backend.order import WORKSHOP_NAME

META_FILE = "wod.yml"


@dataclass(frozen=True)
class Workshop:
    folder: str  # WKSHP-X
    path: Path
    origin: str  # "public" or "private"
    shadowed: bool = False  # a private copy exists but the public one wins


def parse_meta(folder: str, data: Any) -> WorkshopMeta:
    meta, problems = _parse_meta(folder, data)
    if meta is None:
        raise ConfigError(f"workshop {folder}: wod.yml: {problems[0]}")
    return meta


def load_yaml_file(path: Path) -> Any:
    import yaml

    with path.open("rb") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def releases_dir(root: Path) -> Path:
    """Where `content update` keeps the releases a content root links to."""
    return root.parent / f"{root.name}.releases"


def _resolved(root: Path) -> Path:
    return Path(os.path.realpath(root)) if root.is_symlink() else root


class Catalog:
    """The workshops of the configured public and private content roots."""

    def __init__(self, cfg: Config):
        # A root that is a link (`content update` switches releases by replacing it) is
        # resolved once: everything this catalog finds comes from one tree.
        self.roots: list[tuple[str, Path]] = [("public", _resolved(cfg.content.public))]
        if cfg.content.private is not None:
            self.roots.append(("private", _resolved(cfg.content.private)))

    def find(self, folder: str) -> Optional[Workshop]:
        if not WORKSHOP_NAME.fullmatch(folder) or not folder.startswith("WKSHP-"):
            return None
        found = []
        for origin, root in self.roots:
            path = root / folder
            # A link could point anywhere: content folders must be real directories.
            if path.is_dir() and not path.is_symlink():
                found.append(Workshop(folder, path, origin))
        if not found:
            return None
        first = found[0]
        return Workshop(first.folder, first.path, first.origin, shadowed=len(found) > 1)

    def get(self, folder: str) -> Workshop:
        ws = self.find(folder)
        if ws is None:
            raise BadOrder(f"unknown workshop {folder}: no such folder in the content roots")
        return ws

    def all(self) -> list[Workshop]:
        names: set[str] = set()
        for _origin, root in self.roots:
            try:
                entries = os.listdir(root)
            except OSError:
                continue
            names.update(e for e in entries if e.startswith("WKSHP-"))
        return [ws for ws in (self.find(n) for n in sorted(names)) if ws is not None]

    def meta(self, ws: Workshop) -> WorkshopMeta:
        path = ws.path / META_FILE
        if not path.is_file():
            return WorkshopMeta(name=ws.folder)
        try:
            data = load_yaml_file(path)
        except Exception as exc:  # yaml errors, unreadable file
            raise ConfigError(f"workshop {ws.folder}: {META_FILE} is unreadable: "
                              f"{str(exc).splitlines()[0][:80]}")
        return parse_meta(ws.folder, data if data is not None else {})

    def variables_files(self, folder: str) -> list[Path]:
        """`variables_<WORKSHOP>.yml` of the public then the private root, if present."""
        return [p for _o, root in self.roots
                if (p := root / f"variables_{folder}.yml").is_file()]

    def skeletons(self) -> list[Path]:
        """Skeleton folders restored into every home: public first, then private."""
        return [p for _o, root in self.roots if (p := root / "skeleton").is_dir()]


def workshop_variables(cfg: Config, catalog: Catalog, folder: str) -> dict[str, Any]:
    """IP-WKSHP-X from `appliances`, the operator variables (which win: an explicit
    IP-WKSHP-X stays), overridden by variables_<WORKSHOP>.yml, public then private."""
    merged: dict[str, Any] = {f"IP-{name}": app.host for name, app in cfg.appliances.items()}
    merged.update(cfg.variables)
    for path in catalog.variables_files(folder):
        try:
            data = load_yaml_file(path)
        except Exception as exc:
            raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0][:80]}")
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of variables")
        merged.update(data)
    return merged
