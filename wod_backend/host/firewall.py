"""The host firewall rule that keeps students off the mail intake (nftables).

A student has a shell on this host (a JupyterLab terminal, the bash kernel): without
this rule an SMTP connection from their uid to 127.0.0.1 comes from an allowed relay
like the frontend's own. One nft table per configuration (`inet wod_backend_USER`)
refuses new TCP connections from the students' uids to the intake ports (25 and
`mail.listen_port`) with a reset; every other uid (root, the backend user, a frontend
sharing the host) is untouched. The table is loaded from a file that names it, so that
loading it again replaces it whole, and at boot from the schedule (cron `@reboot`, or a
systemd unit).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from wod_backend.config import Config
from wod_backend.errors import ConfigError
from wod_backend.host.hostconf import Change, ensure_file
from wod_backend.system.run import run


def table(cfg: Config) -> str:
    return "wod_backend_" + re.sub(r"[^A-Za-z0-9_]", "_", cfg.mail.backend_user)


def rules_file(cfg: Config) -> Path:
    return cfg.setup.firewall_dir / f"{table(cfg)}.nft"


def ports(cfg: Config) -> list[int]:
    return sorted({25, *([cfg.mail.listen_port] if cfg.mail.listen_port else [])})


def uid_range(cfg: Config) -> str:
    s = cfg.students
    return f"{s.uid_base + s.min}-{s.uid_base + s.max}"


def rule(cfg: Config) -> str:
    """The rule as `nft list` prints it (a set only for more than one port)."""
    p = ports(cfg)
    dport = str(p[0]) if len(p) == 1 else f"{{ {', '.join(map(str, p))} }}"
    return f"tcp dport {dport} meta skuid {uid_range(cfg)} reject with tcp reset"


def ruleset(cfg: Config) -> bytes:
    name = table(cfg)
    return (f"# written by wod-backend setup: students may not connect to the mail intake\n"
            f"table inet {name}\ndelete table inet {name}\n"
            f"table inet {name} {{\n  chain output {{\n"
            f"    type filter hook output priority 0; policy accept;\n"
            f"    {rule(cfg)}\n  }}\n}}\n").encode()


def nft() -> str:
    path = shutil.which("nft") or "/usr/sbin/nft"
    if not Path(path).exists():
        raise ConfigError("nft not found: install nftables (scripts/install-deps), or set "
                          "mail.students_cannot_mail: false")
    return path


def loaded(cfg: Config) -> bool:
    """Whether the kernel has this configuration's table with its rule."""
    listing = run([nft(), "list", "table", "inet", table(cfg)], timeout=30)
    return listing.ok and rule(cfg) in " ".join(listing.output.split())


def ensure_firewall(cfg: Config, apply: bool) -> list[Change]:
    if not cfg.mail.students_cannot_mail or not cfg.students.manage_accounts:
        return []
    changes = ensure_file(rules_file(cfg), ruleset(cfg), 0o644, None, "firewall", apply)
    if changes or not loaded(cfg):
        changes.append(Change("firewall", f"nft table inet {table(cfg)}: {rule(cfg)}"))
        if apply:
            done = run([nft(), "-f", str(rules_file(cfg))], timeout=60)
            if not done.ok:
                raise ConfigError(f"nft -f {rules_file(cfg)}: {done.tail(3, 300)}")
    return changes


def unit_name(cfg: Config) -> str:
    return f"wod-backend-firewall-{table(cfg).removeprefix('wod_backend_')}.service"


def unit(cfg: Config) -> str:
    """The systemd unit that loads the table at boot (without systemd: cron @reboot)."""
    return (f"[Unit]\nDescription=wod-backend: students may not connect to the mail intake\n"
            f"Before=postfix.service\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart=/usr/sbin/nft -f {rules_file(cfg)}\n\n[Install]\n"
            f"WantedBy=multi-user.target\n")
