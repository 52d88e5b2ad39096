"""The sections of the configuration: one frozen dataclass each, with its defaults.

config.py assembles them into `Config`, loads and validates the file; each field's
comment says what it does (README "Configuration" lists them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

# Unambiguous letters and digits: no 0/O, 1/l/I.
DEFAULT_ALPHABET = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def required() -> Any:
    """A field the YAML must give (schema.build refuses it missing)."""
    return field(metadata={"required": True})


@dataclass(frozen=True)
class Limits:
    """What one student may use (system/limits.py); each unset is no limit."""

    tasks: Optional[int] = None  # processes and threads at once (a fork bomb stops here)
    memory_mb: Optional[int] = None
    cpu_percent: Optional[int] = None  # of one core; 200 is two cores
    # MB in the home: quotas where its file system has them, else the sweep measures;
    # over it the student is warned, still over at the next sweep evicted (system/disk.py)
    disk_mb: Optional[int] = None

    @property
    def any(self) -> bool:
        """Any of the cgroup limits (the disk budget is not one)."""
        return any(v is not None for v in (self.tasks, self.memory_mb, self.cpu_percent))


@dataclass(frozen=True)
class Students:
    min: int = 1
    max: int = 100
    base_id: int = 0
    home_root: Path = Path("/student")
    uid_base: int = 2000
    # False in the demo configuration: homes are plain folders, no Linux accounts.
    manage_accounts: bool = True
    shell: str = "/bin/bash"
    home_mode: int = 0o700
    # How long TERM may take before KILL when a student's processes are ended.
    kill_grace_seconds: float = 3.0
    limits: Limits = field(default_factory=Limits)
    # wod-generate-pdf.sh in each delivered workshop folder: the student's notebooks as
    # PDF files (system/pdf.py), as the original's script
    pdf_export: bool = True
    # Hours past a workshop's duration after which a student who got no CLEANUP is
    # cleaned up by the backend itself (`wod-backend expire`); unset: never.
    expiry_grace: Optional[float] = None


# Names of common crypto-currency miners (matched against a process's name and the
# words of its command line, case-insensitively, as shell patterns).
MINERS = ["xmrig*", "minerd", "cpuminer*", "ethminer", "nbminer", "t-rex", "phoenixminer",
          "lolminer", "xmr-stak*", "cgminer", "bfgminer", "nanominer", "srbminer*",
          "teamredminer", "gminer", "ccminer", "nheqminer", "kawpowminer"]


@dataclass(frozen=True)
class Sweep:
    """`wod-backend sweep` (every minute): what makes a student's process abuse."""

    patterns: list = field(default_factory=lambda: list(MINERS))
    # A process above this share of one core over the last cpu_minutes is abuse.
    cpu_percent: float = 90.0
    cpu_minutes: float = 10.0


@dataclass(frozen=True)
class Content:
    public: Path = required()
    private: Optional[Path] = None


@dataclass(frozen=True)
class Hooks:
    """Where workshop hook scripts (scripts/) and playbooks (playbooks/) live."""

    public: Optional[Path] = None
    private: Optional[Path] = None
    timeout: float = 600.0
    # Decrypts ansible-vault values of per-student variables files (0600).
    vault_password_file: Optional[Path] = None


@dataclass(frozen=True)
class Ansible:
    # The interpreter Ansible runs modules with; empty means the running Python.
    python: str = ""
    inventory: Optional[Path] = None
    timeout: float = 900.0


@dataclass(frozen=True)
class Frontend:
    url: str = required()
    username: str = required()
    password_file: Path = required()
    timeout: float = 10.0
    # The workshop list (flags) is cached this long: one fetch serves a burst of orders,
    # and a short frontend outage does not stop them.
    flags_cache_seconds: float = 300.0


@dataclass(frozen=True)
class Kernels:
    """The kernels of the managed hub (host/managed_hub.py): the published notebooks name python3,
    bash and ssh; each built-in one is installed at the version pinned there."""

    python3: bool = True  # with ipywidgets
    bash: bool = True  # bash_kernel
    ssh: bool = True  # sshkernel (the appliance workshops' `%login`)
    # More pip-installable kernels, by requirement string ("calysto_scheme==1.4.8"); the
    # kernelspec their wheel ships is found after the install.
    pip: list = field(default_factory=list)
    # Kernelspec directories installed by other means (gophernotes, evcxr, PowerShell):
    # each holds a kernel.json and is copied into the hub under its folder's name.
    dirs: list = field(default_factory=list)


@dataclass(frozen=True)
class JupyterHub:
    url: str = required()
    token_file: Path = required()
    timeout: float = 10.0
    # No order waits for the hub: its calls are confirmed in the background, which
    # waits this long for one spawn or stop, and gives a call up (dead, in `status`)
    # after this many attempts (the confirmation's and `outbox flush`'s together).
    spawn_wait: float = 300.0
    spawn_attempts: int = 6
    # manage: `setup` installs and runs this hub (its own venv, config, token, service).
    manage: bool = False
    venv: Path = Path("/opt/wod-backend/hub")
    data_dir: Path = Path("/var/lib/wod-backend-hub")  # root's: database, cookie, log
    slow_spawn_timeout: float = 1.0  # a start call answers 202 after this many seconds
    kernels: Kernels = field(default_factory=Kernels)
    # The idle culler (a hub service) stops a server idle this long; 0: never.
    cull_idle_minutes: float = 60.0
    # The hub's internal ports (its API, the proxy's API), on 127.0.0.1; setup checks
    # they are free before it starts the hub (another JupyterHub on the host uses the
    # defaults 8081 and 8001).
    hub_port: int = 8081
    proxy_api_port: int = 8001
    # TLS on jupyterhub.url (https://...): PEM files readable by root; else put a
    # reverse proxy in front (docs/deploying.md).
    tls_cert: Optional[Path] = None
    tls_key: Optional[Path] = None
    # Password guessing: this many failed logins from one address within
    # login_window_minutes refuse that address for ban_minutes (never 127.0.0.1); 0: off.
    login_failures: int = 5
    login_window_minutes: float = 10.0
    ban_minutes: float = 15.0

    @property
    def bans_file(self) -> Path:
        """The managed hub's current bans, readable by the backend (status, doctor,
        metrics): beside the root-only data_dir."""
        return Path(f"{self.data_dir}-public") / "login-bans.json"


@dataclass(frozen=True)
class Ldap:
    uri: str = required()
    bind_dn: str = required()
    password_file: Path = required()
    people_dn: str = required()
    dn_template: str = "uid={user},{people_dn}"
    timeout: float = 10.0


@dataclass(frozen=True)
class Passwords:
    length: int = 12
    alphabet: str = DEFAULT_ALPHABET


@dataclass(frozen=True)
class Mail:
    # Orders are a few hundred bytes; anything much larger is refused unread.
    max_bytes: int = 262144
    # Where `send-test` sends order mails, as the frontend would.
    backend_address: str = "wod@localhost"
    sender: str = "wod-frontend@localhost"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25  # where send-test sends (outgoing); not what postfix listens on
    # postfix's relayhost, e.g. "[smtp.example.org]:587": where a postfix that delivers
    # locally only sends mail for other hosts (schedule.report's)
    relayhost: Optional[str] = None
    # The user whose procmail runs `wod-backend mail` (checked by `doctor`).
    backend_user: str = ""
    # What `setup` gives postfix: the addresses it listens on (inet_interfaces) and how
    # many orders it delivers to procmail at once (local_destination_concurrency_limit).
    listen: str = "loopback-only"
    concurrency: int = 20
    # An extra smtpd listener for the frontend (WoD installs use 10025: the frontend's
    # WODPOSTPORT); 25 is always there.
    listen_port: Optional[int] = None
    # The location's names (the FQDNs the frontend mails to): local destinations.
    domains: list = field(default_factory=list)
    # setup writes a host firewall rule (nft) that refuses the students' uids on the
    # intake ports, and limits local submission (sendmail) to root and the backend user.
    students_cannot_mail: bool = True
    # `setup` runs the resident worker (a service of the backend user) that runs order
    # mails without a new Python process each; false: every mail runs in its own.
    worker: bool = True


@dataclass(frozen=True)
class Intake:
    """Who may order by mail (see intake/policy.py); empty lists allow anyone."""

    allowed_senders: list = field(default_factory=list)  # addresses or @domain
    allowed_relays: list = field(default_factory=list)  # IPs, CIDRs, or "local"
    secret_file: Optional[Path] = None  # set: orders must be signed (HMAC-SHA256)
    window: float = 300.0  # seconds a signature stays valid
    refused: str = "discard"  # discard (exit 0) or bounce (exit 77)
    max_per_minute: int = 120  # orders a minute from one sender
    max_range: int = 200  # students in one range order


@dataclass(frozen=True)
class Privileged:
    """How an unprivileged backend runs the few steps that need root."""

    # auto: in-process when running as root (or without accounts), else through sudo.
    mode: str = "auto"  # auto | direct | sudo
    helper: Optional[Path] = None  # default: wod-backend-priv beside the running Python
    timeout: float = 600.0
    # The helper resident as root (`privd`, started by setup and the schedule): no sudo
    # and no Python start per order; without it running, sudo (privileged/resident.py).
    resident: bool = True


@dataclass(frozen=True)
class Orders:
    # RESET/PURGE wait this long for the customer's CLEANUP, then exit 75 (MTA retries).
    cleanup_wait: float = 20.0
    # An order waits this long for another order of the same student, then exits 75.
    lock_wait: float = 120.0
    # A message without Message-ID delivered again with the same subject and body
    # within this many seconds is the same message: executed once.
    duplicate_window: float = 600.0
    # Delivered reports leave the outbox this many days later (`outbox flush`).
    keep_sent_days: float = 30.0
    # A batch (a range) sends its reports with this many connections side by side.
    report_concurrency: int = 8


@dataclass(frozen=True)
class Schedule:
    """Scheduled work `setup` installs (cron entries, or systemd timers under systemd)."""

    flush: bool = True  # `outbox flush` every minute
    # `sweep` every minute (and `expire` when students.expiry_grace is set).
    sweep: bool = True
    # Set: `metrics --textfile` into this directory every minute (node_exporter's
    # textfile collector directory, e.g. /var/lib/prometheus/node-exporter).
    metrics_dir: Optional[Path] = None
    # Batch resets: "MIN HOUR DOM MON DOW WORKSHOP STUDENTS", e.g. "30 3 * * * WKSHP-X 1-20"
    resets: list = field(default_factory=list)
    # Set: the operator's address: a report mailed daily (report_hour), and at once when
    # the minutely checks turn red (host/report.py)
    report: Optional[str] = None
    report_hour: int = 7


@dataclass(frozen=True)
class Backups:
    """Students' work archived before CLEANUP, RESET and PURGE wipe it (system/backups.py)."""

    dir: Optional[Path] = Path("/var/lib/wod-backend-backups")  # root's, 0700; null: none
    keep_days: float = 30.0  # `backups prune` (the schedule, hourly) removes older ones
    max_mb: int = 100  # of files per archive; changed files beyond it are left out


@dataclass(frozen=True)
class Retention:
    """How long the journal keeps participants' data (the key is `journal`)."""

    # After this many days an order keeps its outcome row but loses its raw mail, its
    # sender and the e-mail addresses in its subject and log (`outbox flush` applies
    # it every minute); unset: kept.
    keep_days: Optional[float] = None


@dataclass(frozen=True)
class Appliance:
    """A workshop's appliance (docs/appliances.md): `appliances.WKSHP-X` is its host as a
    string (today's form) or this mapping. The backend user reaches it by SSH as
    `account`, with sudo there, to set up each student's account."""

    host: str = required()  # IPv4; multiappliance: the range min's, the others follow it
    port: int = 22
    account: str = ""  # the automation account there; default: the backend user's name
    key: Optional[Path] = None  # its private key (0600); default: ssh's own (~/.ssh/id_*)
    manage: bool = True  # false: the workshop's own hooks do the appliance side
    timeout: float = 20  # seconds, for the connection and for every call


@dataclass(frozen=True)
class Setup:
    """Where `setup` writes on this host (defaults: Debian's places)."""

    postfix_dir: Path = Path("/etc/postfix")
    sudoers_file: Path = Path("/etc/sudoers.d/wod-backend")
    cron_file: Path = Path("/etc/cron.d/wod-backend")
    systemd_dir: Path = Path("/etc/systemd/system")
    backend_home: Path = Path("/var/lib/wod-backend-home")
    logrotate_dir: Path = Path("/etc/logrotate.d")
    firewall_dir: Path = Path("/etc/nftables.d")  # the students' nft rule (host/firewall.py)
    # The appliances' host keys, recorded by setup (root's); default: known_hosts beside
    # the configuration file.
    known_hosts: Optional[Path] = None
