"""Workshop templates: Jinja2 in Ansible's dialect, rendered in a sandbox.

Real notebooks use `{{ STDID }}`, `{% if MODEWS == 'CHLG' %}`, `{% raw %}` and
`hostvars[inventory_hostname]['IP-WKSHP-X']`. We render them the way Ansible's template
module would (same block trimming, undefined variables are errors) but in Jinja2's
immutable sandbox with only pure filters: a template can neither read files nor run
code. Importing Ansible's own filter plugins would cost 0.3 s per order and bring in
filters that read the filesystem (fileglob, realpath...), so the common pure ones are
provided here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
import uuid
from typing import Any, Iterable, Mapping

from jinja2 import DictLoader, StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from wod_backend.errors import ConfigError

# File types rendered as templates (CONTRACT.md section 6); everything else is copied.
TEMPLATE_SUFFIXES = (".ipynb", ".yaml", ".py", ".sh", ".src", ".tf", ".env")
TEMPLATE_NAMES = ("Variables.ps1",)


def is_template(name: str) -> bool:
    if name.endswith("-checkpoint.ipynb"):
        return False
    return name.endswith(TEMPLATE_SUFFIXES) or name in TEMPLATE_NAMES


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("yes", "on", "1", "true", "y", "t")
    return bool(value)


def _mandatory(value: Any, msg: str = "mandatory variable not defined") -> Any:
    from jinja2 import Undefined

    if isinstance(value, Undefined):
        raise TemplateError(msg)
    return value


def _combine(*dicts: Mapping, recursive: bool = False) -> dict:
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            if recursive and isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
                out[k] = _combine(out[k], v, recursive=True)
            else:
                out[k] = v
    return out


def _flatten(items: Iterable, levels: int = -1) -> list:
    out: list = []
    for it in items:
        if isinstance(it, (list, tuple)) and levels != 0:
            out.extend(_flatten(it, levels - 1))
        else:
            out.append(it)
    return out


def _yaml(value: Any, **kw: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=False, allow_unicode=True, **kw)


def _regex_search(value: str, pattern: str, *groups: str, ignorecase: bool = False) -> Any:
    m = re.search(pattern, value, re.I if ignorecase else 0)
    if not m:
        return None
    if not groups:
        return m.group(0)
    return [m.group(int(g[1:]) if g.startswith("\\") else g) for g in groups]


FILTERS = {
    "to_json": lambda v, **kw: json.dumps(v, **kw),
    "to_nice_json": lambda v, indent=4, **kw: json.dumps(v, indent=indent, sort_keys=True,
                                                         **kw),
    "from_json": json.loads,
    "to_yaml": _yaml,
    "to_nice_yaml": lambda v, indent=4, **kw: _yaml(v, indent=indent, **kw),
    "from_yaml": lambda v: __import__("yaml").safe_load(v),
    "b64encode": lambda v, encoding="utf-8": base64.b64encode(
        str(v).encode(encoding)).decode("ascii"),
    "b64decode": lambda v, encoding="utf-8": base64.b64decode(str(v)).decode(encoding),
    "regex_replace": lambda v, p, r="", ignorecase=False: re.sub(
        p, r, str(v), flags=re.I if ignorecase else 0),
    "regex_search": _regex_search,
    "regex_findall": lambda v, p, ignorecase=False: re.findall(
        p, str(v), re.I if ignorecase else 0),
    "regex_escape": lambda v: re.escape(str(v)),
    "bool": _to_bool,
    "ternary": lambda v, a, b, none=None: (none if v is None and none is not None
                                           else a if v else b),
    "quote": lambda v: shlex.quote(str(v)),
    "mandatory": _mandatory,
    "combine": _combine,
    "flatten": _flatten,
    "basename": lambda v: str(v).rsplit("/", 1)[-1],
    "dirname": lambda v: str(v).rsplit("/", 1)[0] if "/" in str(v) else "",
    "splitext": lambda v: list(__import__("os").path.splitext(str(v))),
    "split": lambda v, sep=None, maxsplit=-1: str(v).split(sep, maxsplit),
    "md5": lambda v: hashlib.md5(str(v).encode()).hexdigest(),
    "sha1": lambda v: hashlib.sha1(str(v).encode()).hexdigest(),
    "hash": lambda v, algo="sha1": hashlib.new(algo, str(v).encode()).hexdigest(),
    "checksum": lambda v: hashlib.sha1(str(v).encode()).hexdigest(),
    "dict2items": lambda d, key_name="key", value_name="value": [
        {key_name: k, value_name: v} for k, v in d.items()],
    "items2dict": lambda items, key_name="key", value_name="value": {
        i[key_name]: i[value_name] for i in items},
    "to_uuid": lambda v, namespace="361E6D51-FAEC-444A-9079-341386DA8E2E": str(
        uuid.uuid5(uuid.UUID(namespace), str(v))),
    "type_debug": lambda v: type(v).__name__,
}


class TemplateFailure(ConfigError):
    """A workshop template cannot be rendered: a content defect the operator must fix."""


_ENV: ImmutableSandboxedEnvironment | None = None


def environment() -> ImmutableSandboxedEnvironment:
    """The sandboxed environment, configured as Ansible's template module is."""
    global _ENV
    if _ENV is None:
        env = ImmutableSandboxedEnvironment(
            # An empty loader: {% include %} and {% import %} find nothing, ever.
            loader=DictLoader({}), undefined=StrictUndefined, trim_blocks=True, keep_trailing_newline=True,
            autoescape=False)
        env.filters.update(FILTERS)
        _ENV = env
    return _ENV


def render(text: str, context: Mapping[str, Any], where: str = "template") -> str:
    try:
        return environment().from_string(text).render(context)
    except TemplateError as exc:
        raise TemplateFailure(f"{where}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160]}") from None


def compile_only(text: str, where: str = "template") -> None:
    try:
        environment().parse(text)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        raise TemplateFailure(f"{where}{f' line {line}' if line else ''}: "
                              f"{str(exc).splitlines()[0][:160]}") from None


def render_notebook(data: bytes, context: Mapping[str, Any], where: str) -> bytes:
    """Render a notebook cell by cell: a value with quotes or newlines cannot break JSON."""
    try:
        nb = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TemplateFailure(f"{where}: not a valid notebook (JSON): {exc}") from None
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise TemplateFailure(f"{where}: not a notebook (no cells list)")
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise TemplateFailure(f"{where}: cell {i} is not an object")
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        if "{" not in text:
            continue
        rendered = render(text, context, f"{where} cell {i}")
        cell["source"] = rendered.splitlines(keepends=True) if isinstance(
            source, list) else rendered
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def render_file(name: str, data: bytes, context: Mapping[str, Any], where: str) -> bytes:
    if name.endswith(".ipynb"):
        return render_notebook(data, context, where)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TemplateFailure(f"{where}: not UTF-8 text") from None
    return render(text, context, where).encode("utf-8")


def student_vars(student: int, password: str, folder: str, mode: str, customer: str,
                 appliance: str | None = None) -> dict[str, Any]:
    """The per-order variables the reference offers to templates."""
    out: dict[str, Any] = {"STDID": student, "PASSSTU": password, "STUDENT": f"student{student}",
                           "WORKSHOP": folder, "MODEWS": mode, "CUSTOMER": customer}
    if appliance is not None:
        out["APPLIANCE"] = appliance
    return out


def student_context(variables: Mapping[str, Any], student: int, password: str, folder: str,
                    mode: str, customer: str, appliance: str | None,
                    inventory_hostname: str) -> dict[str, Any]:
    """Everything a student's templates see: workshop and order variables, hostvars."""
    return context_for({**variables, **student_vars(student, password, folder, mode, customer,
                                                    appliance)}, inventory_hostname)


def context_for(variables: Mapping[str, Any], inventory_hostname: str) -> dict[str, Any]:
    """Template variables plus Ansible's `inventory_hostname` and `hostvars` views.

    As in Ansible, a variable's value may itself be a template (`"https://{{ HOST }}"`):
    such values are rendered against the others, a few passes deep.
    """
    ctx = dict(variables)
    ctx["inventory_hostname"] = inventory_hostname
    for _ in range(3):
        pending = {k: v for k, v in ctx.items()
                   if isinstance(v, str) and ("{{" in v or "{%" in v)}
        if not pending:
            break
        for key, value in pending.items():
            ctx[key] = render(value, ctx, f"variable {key}")
    ctx["hostvars"] = {inventory_hostname: dict(ctx)}
    return ctx
