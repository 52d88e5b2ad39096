"""`config init --demo DIR`: a complete configuration that needs no root and no server;
`config init --example DIR`: a commented production configuration to start from.

Homes are plain folders under DIR (no Linux accounts are touched), the state lives in
DIR, content and hooks are the ones shipped with wod-backend, and no frontend, hub or
LDAP is configured: reports wait in the outbox, where `outbox list` shows them.
"""

from __future__ import annotations

from pathlib import Path

from wod_backend.errors import ConfigError
from wod_backend.host.shipped import shipped_root

TEMPLATE = """\
# wod-backend demo configuration, written by `wod-backend config init --demo`.
# Everything lives under {root}; nothing needs root or a server.
students:
  min: 1
  max: 20
  base_id: 0
  home_root: {root}/homes
  uid_base: 2000
  manage_accounts: false   # homes are plain folders: no Linux accounts in the demo
content:
  public: {shipped}/workshops-public
  private: {shipped}/workshops-private
hooks:
  public: {shipped}
  timeout: 120
state_dir: {root}/state
backups: {{dir: {root}/backups}}   # students' changes, archived before a CLEANUP wipes them
inventory_hostname: 127.0.0.1
variables:
  BRANDING: Workshops-on-Demand (demo)
  SURVEYURL: https://example.org/survey
  BACKEND_HOST: localhost
appliances:
  # The demo has no second host: this workshop's hooks stand in for its appliance.
  # A real one is set up by the backend itself (docs/appliances.md).
  WKSHP-Ansible101: {{host: 127.0.0.1, manage: false}}
# To talk to real services, add (secrets in 0600 files):
# frontend: {{url: http://frontend:8021/api, username: moderator, password_file: /etc/wod-backend/frontend.pass}}
# jupyterhub:                          # the students' hub, installed and run by setup
#   url: https://backend.example.org:8000
#   token_file: /etc/wod-backend/hub.token   # setup generates it
#   manage: true
#   tls_cert: /etc/wod-backend/tls/cert.pem  # or a reverse proxy (docs/deploying.md)
#   tls_key: /etc/wod-backend/tls/key.pem
#   cull_idle_minutes: 60
#   kernels: {{python3: true, bash: true, ssh: true, pip: [], dirs: []}}
# ldap: {{uri: ldap://127.0.0.1, bind_dn: cn=admin,dc=example,dc=org, password_file: /etc/wod-backend/ldap.pass, people_dn: ou=people,dc=example,dc=org}}
"""


EXAMPLE = """\
# wod-backend production configuration, written by `wod-backend config init --example`.
# Edit, then as root: wod-backend --config {path} setup
# Secrets live in 0600 files named here, never in this file; this file stays root's.
students:
  min: 1                 # the student numbers this backend serves (studentN)
  max: 100
  base_id: 0             # frontend database id = N + base_id (one backend: 0)
  home_root: /student    # homes are <home_root>/studentN
  uid_base: 2000         # uid = gid = uid_base + N
  kill_grace_seconds: 3
  # limits: {{tasks: 256, memory_mb: 2048, cpu_percent: 100}}   # per student
  # expiry_grace: 2                     # hours past a workshop's duration: expire cleans up
content:
  public: {shipped}/workshops-public    # or a clone of your public workshop collection
  # private: /srv/wod-private/workshops # the operator's own workshops
hooks:
  public: {shipped}                     # holds scripts/ and playbooks/
  # private: /srv/wod-private
  timeout: 600
state_dir: /var/lib/wod-backend         # the backend user's (journal, outbox, locks, log)
mail:
  backend_user: wod                     # setup makes it: procmail runs orders as this user
  domains: [backend.example.org]        # this location's FQDN(s): the frontend mails
                                        # wod@<one of them> (its locations row's name)
  listen_port: 10025                    # the frontend's WODPOSTPORT (25 is served too)
  listen: all                           # postfix inet_interfaces: must include the address
                                        # the frontend connects to (loopback-only if local)
  backend_address: wod@backend.example.org   # where send-test mails orders
  smtp_port: 10025
  concurrency: 20                       # orders delivered to procmail at once
  students_cannot_mail: true            # nft rule + authorized_submit_users (setup)
intake:
  allowed_relays: [192.0.2.10]          # the frontend's address(es), as postfix sees them
  # Signed orders: only a frontend that signs (X-WoD-Signature) can use this; the
  # unmodified WoD frontend never signs, and every order would be refused. Turn it on
  # when your frontend signs; setup then generates the secret to give it.
  # secret_file: /etc/wod-backend/intake.secret
  refused: discard                      # doctor and status show refusals by reason
frontend:
  url: http://frontend.example.org:8021/api
  username: moderator
  password_file: /etc/wod-backend/frontend.pass # provide it (0600)
# jupyterhub:                          # the students' hub, installed and run by setup
#   url: https://backend.example.org:8000
#   token_file: /etc/wod-backend/hub.token   # setup generates it
#   manage: true
#   tls_cert: /etc/wod-backend/tls/cert.pem  # or a reverse proxy (docs/deploying.md)
#   tls_key: /etc/wod-backend/tls/key.pem
#   cull_idle_minutes: 60
#   kernels: {{python3: true, bash: true, ssh: true, pip: [], dirs: []}}
# ldap: {{uri: ldap://127.0.0.1, bind_dn: "cn=admin,dc=example,dc=org",
#        password_file: /etc/wod-backend/ldap.pass, people_dn: "ou=people,dc=example,dc=org"}}
schedule:
  flush: true                           # outbox flush every minute
  sweep: true                           # sweep (miners, CPU hogs) and expire every minute
  # metrics_dir: /var/lib/prometheus/node-exporter   # metrics --textfile every minute
  resets: []                            # e.g. ["30 3 * * * WKSHP-Ansible101 1-20"]
backups:
  dir: /var/lib/wod-backend-backups     # root's, 0700: students' changes before a wipe
  keep_days: 30
journal:
  keep_days: 90                         # then raw mails and addresses are removed
variables:
  BRANDING: Workshops-on-Demand
  SURVEYURL: https://example.org/survey
  BACKEND_HOST: backend.example.org
appliances:                             # docs/appliances.md: setup records host keys
  WKSHP-Ansible101: 192.0.2.20          # the host alone: port 22, the backend user's name
  # WKSHP-Docker101: {{host: 192.0.2.30, port: 22, account: wodadmin,
  #                   key: /var/lib/wod-backend-home/.ssh/id_ed25519, timeout: 20}}
"""


def write_example_config(directory: str) -> Path:
    root = Path(directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yml"
    if path.exists():
        raise ConfigError(f"{path} exists: not overwritten")
    path.write_text(EXAMPLE.format(path=path, shipped=shipped_root()), encoding="utf-8")
    path.chmod(0o644)
    return path


def write_demo_config(directory: str) -> Path:
    root = Path(directory).resolve()
    for sub in ("homes", "state"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "state").chmod(0o700)
    path = root / "config.yml"
    path.write_text(TEMPLATE.format(root=root, shipped=shipped_root()), encoding="utf-8")
    return path
