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
import signal
import threading
import uuid
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

from jinja2 import DictLoader, StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from wod_backend.errors import ConfigError

# File types rendered as templates (docs/content.md); everything else is copied.
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


# Bounds on what one file's rendering may cost: content authors' templates are not
# trusted (nested loops, a regex that backtracks forever, 'a' * 10**9).
MAX_SECONDS = 2.0
MAX_OUTPUT = 10 * 1024 * 1024
MAX_POWER = 10000  # largest exponent of `**` (9**9**9 would take minutes)
# range() is capped by Jinja2's sandbox itself at 100,000 items (jinja2.sandbox.MAX_RANGE).


class _OutOfTime(BaseException):
    """Raised by the timer inside a rendering; BaseException so no filter swallows it."""


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, refusing products and powers that would be huge."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(times, int) \
                        and len(seq) * times > MAX_OUTPUT:
                    raise OverflowError(f"a product of {len(seq)} x {times} items")
        elif operator == "**":
            if isinstance(right, int) and isinstance(left, (int, float)) and \
                    abs(right) > MAX_POWER and abs(left) > 1:
                raise OverflowError(f"an exponent of {right}")
        return super().call_binop(context, operator, left, right)


_ENVS: dict[bool, BoundedSandbox] = {}


def environment(trim_blocks: bool = True) -> BoundedSandbox:
    """The sandboxed environment, configured as Ansible's template module is.

    trim_blocks=False is for notebook cells: in the file, each source line is a JSON
    string ending in an escaped `\\n`, which Ansible's trim_blocks never removes."""
    if trim_blocks not in _ENVS:
        env = BoundedSandbox(
            # An empty loader: {% include %} and {% import %} find nothing, ever.
            loader=DictLoader({}), undefined=StrictUndefined, trim_blocks=trim_blocks,
            keep_trailing_newline=True, autoescape=False)
        env.filters.update(FILTERS)
        _ENVS[trim_blocks] = env
    return _ENVS[trim_blocks]


_timer_on = False


@contextmanager
def time_bound(where: str, seconds: float = MAX_SECONDS) -> Iterator[None]:
    """At most `seconds` of rendering for what runs inside (one file), then a failure.

    A real-time timer (SIGALRM) interrupts Python loops and regular expressions alike;
    it needs the main thread, where every rendering of ours runs. Nested uses share
    the outer bound."""
    global _timer_on
    if _timer_on or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _OutOfTime()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    _timer_on = True
    try:
        yield
    except _OutOfTime:
        raise TemplateFailure(f"{where}: rendering took more than {seconds:g}s "
                              f"(a runaway loop or regular expression?)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _timer_on = False


def render(text: str, context: Mapping[str, Any], where: str = "template",
           trim_blocks: bool = True) -> str:
    """Render one template text, bounded in time and output; any failure is a
    TemplateFailure naming `where`."""
    with time_bound(where):
        try:
            out: list[str] = []
            size = 0
            template = environment(trim_blocks).from_string(text)
            for chunk in template.generate(context):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateFailure(f"{where}: renders to more than "
                                          f"{MAX_OUTPUT // (1024 * 1024)} MB")
                out.append(chunk)
            return "".join(out)
        except TemplateFailure:
            raise
        except TemplateError as exc:
            raise TemplateFailure(f"{where}: {type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:160] if str(exc) else ''}"
                                  ) from None
        except (Exception, RecursionError, MemoryError) as exc:
            # Untrusted input: OverflowError, RecursionError, a YAML ConstructorError in
            # from_yaml... are content defects, never a crash of the order.
            detail = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise TemplateFailure(f"{where}: {type(exc).__name__}: {detail}") from None


def _notebook_cells(nb: Any, where: str) -> list:
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise TemplateFailure(f"{where}: not a notebook (no cells list)")
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise TemplateFailure(f"{where}: cell {i} is not an object")
    return cells


def render_notebook(data: bytes, context: Mapping[str, Any], where: str) -> bytes:
    """Render a notebook as the original backend's Ansible does, but safer.

    A notebook that is JSON is rendered cell by cell (only cell sources are templates;
    outputs and metadata are copied as they are), so that no value can break its JSON.
    One that is not JSON as it stands (published notebooks put `{% raw %}` lines between
    the JSON strings of a cell) is rendered as one text, Ansible's way, and must be a
    notebook afterwards; otherwise it is a content defect, never shipped."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TemplateFailure(f"{where}: not a valid notebook (JSON): not UTF-8") from None
    with time_bound(where):
        try:
            nb = json.loads(text)
        except (ValueError, RecursionError):
            rendered = render(text, context, where)
            try:
                _notebook_cells(json.loads(rendered), where)
            except (ValueError, RecursionError) as exc:
                raise TemplateFailure(f"{where}: not a valid notebook (JSON), even after "
                                      f"rendering: {str(exc)[:120]}") from None
            return rendered.encode("utf-8")
        cells = _notebook_cells(nb, where)
        size = 0
        for i, cell in enumerate(cells):
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else str(source)
            if "{" not in text:
                continue
            out = render(text, context, f"{where} cell {i}", trim_blocks=False)
            size += len(out)
            if size > MAX_OUTPUT:
                raise TemplateFailure(f"{where}: renders to more than "
                                      f"{MAX_OUTPUT // (1024 * 1024)} MB")
            cell["source"] = out.splitlines(keepends=True) if isinstance(source, list) else out
    return (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def render_file(name: str, data: bytes, context: Mapping[str, Any], where: str) -> bytes:
    if name.endswith(".ipynb"):
        return render_notebook(data, context, where)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TemplateFailure(f"{where}: not UTF-8 text") from None
    return render(text, context, where).encode("utf-8")


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
