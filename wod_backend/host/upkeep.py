"""Maintenance: order mails held (exit 75, postfix keeps them queued) while it is on.

A flag in state_dir, which the backend user owns: holding its own mails is all it can
do with it. `wod-backend mail` looks for it before reading anything.
"""

from __future__ import annotations

import os

from wod_backend.config import Config
from wod_backend.state.files import MAINTENANCE, ensure_private_dir


def set_maintenance(cfg: Config, on: bool) -> None:
    path = cfg.state_dir / MAINTENANCE
    if on:
        ensure_private_dir(cfg.state_dir)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
