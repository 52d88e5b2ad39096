"""`setup`'s steps for the operator's data: the backups folder (root's, 0700) and the
log's rotation (a logrotate rule: size-based, copytruncate, so that every process
appending to the log keeps writing to the live file)."""

from __future__ import annotations

import grp
import pwd

from wod_backend.config import Config
from wod_backend.host.hostconf import Change, ensure_dir, ensure_file

LOGROTATE = "wod-backend"


def logrotate_rule(cfg: Config) -> bytes:
    """Rotate state_dir/wod-backend.log at 20 MB, keep 5 (compressed), as its owner."""
    owner = ""
    if cfg.mail.backend_user:
        try:
            pw = pwd.getpwnam(cfg.mail.backend_user)
            owner = f"    su {pw.pw_name} {grp.getgrgid(pw.pw_gid).gr_name}\n"
        except KeyError:
            pass
    return (f"# written by wod-backend setup\n{cfg.state_dir}/wod-backend.log {{\n"
            f"    size 20M\n    rotate 5\n    compress\n    delaycompress\n    missingok\n"
            f"    notifempty\n    copytruncate\n{owner}}}\n").encode()


def ensure_data(cfg: Config, apply: bool) -> list[Change]:
    changes: list[Change] = []
    if cfg.backups.dir is not None:
        changes += ensure_dir(cfg.backups.dir, 0o700, None, "backups", apply)
    if cfg.setup.logrotate_dir.is_dir():
        changes += ensure_file(cfg.setup.logrotate_dir / LOGROTATE, logrotate_rule(cfg),
                               0o644, None, "log rotation", apply)
    return changes
