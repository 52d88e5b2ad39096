"""`config init --demo DIR`: a complete configuration that needs no root and no server.

Homes are plain folders under DIR (no Linux accounts are touched), the state lives in
DIR, content and hooks are the ones shipped with wod-backend, and no frontend, hub or
LDAP is configured: reports wait in the outbox, where `outbox list` shows them.
"""

from __future__ import annotations

from pathlib import Path

from wod_backend.errors import ConfigError

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
inventory_hostname: 127.0.0.1
variables:
  BRANDING: Workshops-on-Demand (demo)
  SURVEYURL: https://example.org/survey
  BACKEND_HOST: localhost
appliances:
  WKSHP-Ansible101: 127.0.0.1
# To talk to real services, add (secrets in 0600 files):
# frontend: {{url: http://frontend:8021/api, username: moderator, password_file: /etc/wod-backend/frontend.pass}}
# jupyterhub: {{url: http://127.0.0.1:8000, token_file: /etc/wod-backend/hub.token}}
# ldap: {{uri: ldap://127.0.0.1, bind_dn: cn=admin,dc=example,dc=org, password_file: /etc/wod-backend/ldap.pass, people_dn: ou=people,dc=example,dc=org}}
"""


def shipped_root() -> Path:
    """The checkout wod-backend runs from, which holds the shipped content."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "workshops-public").is_dir():
        raise ConfigError(f"shipped content not found next to the package ({root}); "
                          f"install wod-backend from a checkout (pip install -e)")
    return root


def write_demo_config(directory: str) -> Path:
    root = Path(directory).resolve()
    for sub in ("homes", "state"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "state").chmod(0o700)
    path = root / "config.yml"
    path.write_text(TEMPLATE.format(root=root, shipped=shipped_root()), encoding="utf-8")
    return path
