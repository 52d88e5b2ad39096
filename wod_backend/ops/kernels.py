"""The managed hub's kernels, and the kernels the content needs.

The published notebooks name their kernel in `metadata.kernelspec.name`: most `bash`,
many `ssh` (the appliance workshops' `%login`), some `python3`, a few `gophernotes` or
`rust`. A notebook whose kernel the hub lacks opens on JupyterLab's "No Kernel"
dialog, so `workshops check` names each one and `doctor` is red while the catalog
needs a kernel the hub lacks. `setup` installs the built-in kernels at the versions
pinned here, the configuration's extra pip kernels, and copies the kernelspec
directories it names (kernels built by other means: Go, Rust, PowerShell).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Iterator, Optional

from wod_backend.config import Config, Kernels
from wod_backend.errors import ConfigError

# name -> (pinned packages, `python -m ...` that registers its kernelspec in the venv)
BUILTIN: dict[str, tuple[tuple[str, ...], Optional[str]]] = {
    "python3": (("ipykernel==7.4.0", "ipywidgets==8.1.9"), None),
    "bash": (("bash_kernel==0.10.0",), "bash_kernel.install --sys-prefix"),
    "ssh": (("sshkernel==0.11.1",), "sshkernel install --sys-prefix"),
}

# A notebook's kernelspec name, read as text: templates with Jinja between their JSON
# lines are not JSON until rendered, and their metadata is never templated.
_KERNELSPEC = re.compile(rb'"kernelspec"\s*:\s*\{[^{}]*?"name"\s*:\s*"([^"]+)"', re.S)


def builtin(kernels: Kernels) -> list[str]:
    return [name for name in BUILTIN if getattr(kernels, name)]


def packages(kernels: Kernels) -> list[str]:
    """What pip installs into the hub's venv for these kernels."""
    out = [p for name in builtin(kernels) for p in BUILTIN[name][0]]
    return out + list(kernels.pip)


def install_modules(kernels: Kernels) -> list[str]:
    return [m for name in builtin(kernels) if (m := BUILTIN[name][1]) is not None]


def spec_dirs(kernels: Kernels) -> dict[str, Path]:
    """The configured kernelspec directories by kernel name (their folder's name)."""
    out = {}
    for entry in kernels.dirs:
        path = Path(entry)
        if not (path / "kernel.json").is_file():
            raise ConfigError(f"config key jupyterhub.kernels.dirs: {path} holds no "
                              f"kernel.json")
        out[path.name] = path
    return out


def kernels_dir(venv: Path) -> Path:
    return venv / "share" / "jupyter" / "kernels"


def installed(venv: Path) -> set[str]:
    """The kernel names the hub's venv serves (python3 always: the server's own)."""
    names = {"python3"}
    try:
        names |= {p.name for p in kernels_dir(venv).iterdir()
                  if (p / "kernel.json").is_file()}
    except OSError:
        pass
    return names


def hub_kernels(cfg: Config) -> Optional[set[str]]:
    """What the managed hub serves: installed, or, before setup installed them, what the
    configuration asks for; None when the hub is not managed here (nothing known)."""
    hub = cfg.jupyterhub
    if hub is None or not hub.manage:
        return None
    if (hub.venv / "bin" / "python").exists():
        return installed(hub.venv)
    return {"python3", *builtin(hub.kernels), *(Path(d).name for d in hub.kernels.dirs)}


def copy_spec(src: Path, venv: Path) -> None:
    """A kernelspec directory copied into the hub's venv (root's, replacing an old one)."""
    dest = kernels_dir(venv) / src.name
    tmp = dest.with_name(f".{src.name}.new")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, symlinks=False)
    json.loads((tmp / "kernel.json").read_text())  # a broken spec fails here, not later
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def same_spec(src: Path, venv: Path) -> bool:
    dest = kernels_dir(venv) / src.name
    try:
        return all((dest / p.relative_to(src)).read_bytes() == p.read_bytes()
                   for p in src.rglob("*") if p.is_file())
    except OSError:
        return False


def notebook_kernel(path: Path) -> Optional[str]:
    try:
        with open(path, "rb") as fh:
            m = _KERNELSPEC.search(fh.read(1 << 20))
    except OSError:
        return None
    return m.group(1).decode("utf-8", "replace") if m else None


def lacking(root: Path, served: set[str]) -> Iterator[tuple[Path, str]]:
    """(notebook, kernel name) of each notebook under `root` whose kernel is not served."""
    for path in notebooks(root):
        name = notebook_kernel(path)
        if name is not None and name not in served:
            yield path, name


def notebooks(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.ipynb")):
        if ".ipynb_checkpoints" not in path.parts:
            yield path
