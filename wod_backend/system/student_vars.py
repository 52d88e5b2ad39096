"""Per-student variables (docs/content.md, "Per-student variables"), as the original reads
them: `pass/variables_<WKSHP>_<STDID>.yml` after the workshop's variables files. Two
places, read in this order, the later winning:

- the operator's, `<hooks.private>/pass/` (root's tree: per-seat API keys, lab
  credentials the operator provides);
- the create hooks', `<state_dir>/pass/` (`WOD_PASS_DIR`): a create hook runs before the
  notebooks are rendered, so what it writes is used, as in the original.

Values may be ansible-vault encrypted (`!vault |` values, or a whole file encrypted by
`ansible-vault encrypt`): they are decrypted with `hooks.vault_password_file` through
ansible-core's VaultLib. They are read by the backend user and go to root's side in the
step request (never in argv nor in the log); root checks their shape (request.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from wod_backend.config import Config, read_secret
from wod_backend.errors import ConfigError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
MAX_KEYS, MAX_TEXT = 200, 4096


def pass_dirs(cfg: Config) -> list[Path]:
    """Where per-student variables files are looked for, in reading order."""
    out = [cfg.hooks.private / "pass"] if cfg.hooks.private is not None else []
    return out + [hook_pass_dir(cfg)]


def hook_pass_dir(cfg: Config) -> Path:
    """Where create hooks write theirs (WOD_PASS_DIR): the backend user's, 0700."""
    return cfg.state_dir / "pass"


class _Vaulted(str):
    """A `!vault` value's ciphertext, decrypted after parsing."""


def _loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def vaulted(loader: Any, node: Any) -> _Vaulted:
        return _Vaulted(loader.construct_scalar(node))

    Loader.add_constructor("!vault", vaulted)
    return Loader


def _vault(cfg: Config) -> Any:
    if cfg.hooks.vault_password_file is None:
        return None
    import os

    if os.geteuid() != 0 and "ANSIBLE_HOME" not in os.environ:
        # ansible-core makes its home and temp folders when it is imported: ours, not
        # whatever $HOME the mail arrived with
        from wod_backend.state.files import ensure_private_dir

        home = cfg.state_dir / "ansible"
        ensure_private_dir(home)
        os.environ["ANSIBLE_HOME"] = str(home)
        os.environ["ANSIBLE_LOCAL_TEMP"] = str(home / "tmp")
    from ansible.parsing.vault import VaultLib, VaultSecret

    secret = read_secret(cfg.hooks.vault_password_file).encode()
    return VaultLib([("default", VaultSecret(secret))])


def _decrypt(vault: Any, text: str, path: Path) -> str:
    from ansible.errors import AnsibleError

    if vault is None:
        raise ConfigError(f"{path}: holds vault-encrypted values but "
                          f"hooks.vault_password_file is not set")
    try:
        return vault.decrypt(text.encode()).decode("utf-8")
    except (AnsibleError, UnicodeDecodeError):
        raise ConfigError(f"{path}: a vault value does not decrypt with "
                          f"hooks.vault_password_file")


def read_file(cfg: Config, path: Path, vault: Any = None) -> dict[str, Any]:
    """One per-student variables file, decrypted and checked."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}")
    if text.lstrip().startswith("$ANSIBLE_VAULT"):
        text = _decrypt(vault if vault is not None else _vault(cfg), text, path)
    try:
        data = yaml.load(text, Loader=_loader())
    except yaml.YAMLError:
        raise ConfigError(f"{path}: not valid YAML")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of variables")
    out = {}
    for key, value in data.items():
        if isinstance(value, _Vaulted):
            vault = vault if vault is not None else _vault(cfg)
            value = _decrypt(vault, str(value), path)
        out[key] = value
    why = check(out)
    if why:
        raise ConfigError(f"{path}: {why}")
    return out


def load(cfg: Config, folder: str, number: int) -> dict[str, Any]:
    """The student's variables for a workshop: the operator's file, then the hooks'."""
    import os

    merged: dict[str, Any] = {}
    vault = None
    for directory in pass_dirs(cfg):
        path = directory / f"variables_{folder}_{number}.yml"
        if os.geteuid() == 0 and directory == hook_pass_dir(cfg) and \
                _owner(cfg.state_dir) != 0:
            continue  # root reads nothing the backend user writes
        if path.is_file():
            if vault is None and cfg.hooks.vault_password_file is not None:
                vault = _vault(cfg)
            merged.update(read_file(cfg, path, vault))
    return merged


def _owner(path: Path) -> Optional[int]:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def ensure_hook_dir(cfg: Config) -> None:
    """WOD_PASS_DIR, private to the backend user, before a create hook runs."""
    import os

    from wod_backend.state.files import ensure_private_dir

    if os.geteuid() != 0 or _owner(cfg.state_dir) == 0:  # root: only its own state_dir
        ensure_private_dir(hook_pass_dir(cfg))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float)) or \
        (isinstance(value, str) and len(value) <= MAX_TEXT)


def check(values: Any) -> Optional[str]:
    """Why these are not per-student variables (root checks them again), or None."""
    if not isinstance(values, dict) or len(values) > MAX_KEYS:
        return f"expected a mapping of at most {MAX_KEYS} variables"
    for key, value in values.items():
        if not isinstance(key, str) or not NAME.fullmatch(key):
            return f"{str(key)[:40]!r} is not a variable name"
        if not (_scalar(value) or isinstance(value, list) and len(value) <= 100 and
                all(_scalar(v) for v in value)):
            return f"variable {key}: expected text, a number, true/false or a list of them"
    return None
