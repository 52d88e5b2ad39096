"""Workshop hooks: where they are. (Running them: see `system/automation.py`.)

For each phase a workshop may have, in the public hooks tree and then in the private
one, a shell script `scripts/<phase>-<WORKSHOP>.sh` (the reference's names) and an
Ansible playbook `playbooks/<WORKSHOP>/<phase>.yml`. They run in this fixed order:
public script, public playbook, private script, private playbook.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from wod_backend.config import Config


class Phase(str, enum.Enum):
    CREATE = "create"
    POST_COPY = "post-copy"
    CLEANUP = "cleanup"
    RESET = "reset"


@dataclass(frozen=True)
class Hook:
    phase: Phase
    kind: str  # "script" or "playbook"
    path: Path
    origin: str  # "public" or "private"
    root: Path  # the hooks tree holding scripts/ and playbooks/


def hook_roots(cfg: Config) -> list[tuple[str, Path]]:
    roots = []
    if cfg.hooks.public is not None:
        roots.append(("public", cfg.hooks.public))
    if cfg.hooks.private is not None:
        roots.append(("private", cfg.hooks.private))
    return roots


def find_hooks(cfg: Config, folder: str, phase: Phase) -> list[Hook]:
    found = []
    for origin, root in hook_roots(cfg):
        script = root / "scripts" / f"{phase.value}-{folder}.sh"
        if script.is_file():
            found.append(Hook(phase, "script", script, origin, root))
        playbook = root / "playbooks" / folder / f"{phase.value}.yml"
        if playbook.is_file():
            found.append(Hook(phase, "playbook", playbook, origin, root))
    return found
