"""The one Jinja2 environment that renders every template string, and its limits.

A template file may come from anyone (a CSV row can name one), so its prompt, system
instruction and layout run in ``ImmutableSandboxedEnvironment``: no ``_`` attributes,
no unsafe callables, no changes to the values it is given. There is no file loader, so
``{% include %}``, ``{% import %}`` and ``{% extends %}`` can read nothing; ``check``
refuses them, and every ``_`` name written in the template, when it loads.

Runaway work is stopped per render (``SecurityError``):

* text: at most ``MAX_TEXT_CHARS`` characters emitted, counted wherever text is
  emitted (inside macros and ``{% set %}`` blocks too, so counted again where used);
* work: at most ``MAX_STEPS`` loop iterations plus calls; ``range()`` at most
  ``MAX_RANGE`` items (the sandbox's own cap);
* values: ``*``, ``**``, ``+`` and ``%`` whose result would pass the text cap (or
  ``_MAX_INT_BITS``), and the filters and ``str`` methods that grow text (``center``,
  ``indent``, ``replace``, ``join``, ``format``, ...) past it, are refused before the
  value is built; reading a value longer than the cap is refused.

These stop the known runaway patterns; they are not a memory quota.
"""

from __future__ import annotations

import functools
import math
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment

MAX_TEXT_CHARS = 4_000_000  # ~1M tokens: more than any prompt or lesson needs
MAX_STEPS = 200_000  # a few seconds of Jinja; built-in layouts take ~1-2 per answer item
_MAX_INT_BITS = 4096
_FILE_TAGS = {
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
    nodes.Extends: "extends",
}
# Filters whose argument names an attribute (``map(attribute='a.b')``, ``attr('x')``).
_ATTRIBUTE_FILTERS = {"attr", "map", "selectattr", "rejectattr", "sort", "groupby", "sum"}
# Widths and precisions in a format string: ``%-08.3f`` and ``{:>8.3}``.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)(\{?)")


@dataclass
class _Budget:
    text: int = MAX_TEXT_CHARS
    steps: int = MAX_STEPS


_BUDGET: ContextVar[_Budget] = ContextVar("template_budget")


def _spend(*, text: int = 0, steps: int = 0) -> None:
    budget = _BUDGET.get()
    budget.text -= text
    budget.steps -= steps
    if budget.text < 0:
        raise SecurityError(f"the rendered text passes the limit of {MAX_TEXT_CHARS:,} characters")
    if budget.steps < 0:
        raise SecurityError(f"more than {MAX_STEPS:,} loop iterations and calls")


def _refuse(size: int, what: str) -> None:
    if size > MAX_TEXT_CHARS:
        raise SecurityError(f"{what} of {size:,} passes the limit of {MAX_TEXT_CHARS:,}")


def _deep_len(value: Any, limit: int = MAX_TEXT_CHARS) -> int:
    """About how long ``str(value)`` is; stops counting once past ``limit``, so values
    that share parts (a list holding itself twice, forty times over) cost little."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            total += 8
    return total


def _check_format(fmt: str) -> None:
    """A width or precision in a format string (``%0999999999d``, ``{:>999999999}``);
    one taken from the values (``%*d``, ``{:{}}``) cannot be checked, so it is refused."""
    widths = [w for spec in _PERCENT_SPEC.findall(fmt) for w in spec]
    for spec, nested in _BRACE_SPEC.findall(fmt):
        widths += ["*"] if nested else re.findall(r"\d+", spec)
    for width in widths:
        if width == "*":
            raise SecurityError("a format width taken from a value is not allowed")
        if len(width) > len(str(MAX_TEXT_CHARS)) or (width and int(width) > MAX_TEXT_CHARS):
            raise SecurityError(f"a format width of {width[:20]} passes the limit")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    sized = (str, bytes, list, tuple)
    if operator == "*":
        seq, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(seq, sized) and isinstance(times, int):
            _refuse(len(seq) * times, "a repetition")
        elif (
            isinstance(left, int)
            and isinstance(right, int)
            and left.bit_length() + right.bit_length() > _MAX_INT_BITS
        ):
            raise SecurityError(f"a product of more than {_MAX_INT_BITS} bits")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int):
        if right > 0 and abs(left) > 1 and right * math.log2(abs(left)) > _MAX_INT_BITS:
            raise SecurityError(f"a power of more than {_MAX_INT_BITS} bits")
    elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        _refuse(len(left) + len(right), "a concatenation")
    elif operator == "%" and isinstance(left, str):
        _check_format(left)


def _int_arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str, default: int) -> int:
    value = args[0] if args else kwargs.get(name, default)
    return value if isinstance(value, int) else len(str(value))


def _check_growth(name: str, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse a filter or ``str`` method that would build more than the text cap."""
    text = value if isinstance(value, str) else ""
    if name in {"center", "ljust", "rjust", "zfill"}:
        _refuse(_int_arg(args, kwargs, "width", 0), "a width")
    elif name == "indent":
        lines = text.count("\n") + 1
        _refuse(len(text) + _int_arg(args, kwargs, "width", 4) * lines, "an indented text")
    elif name == "expandtabs":
        _refuse(len(text) + _int_arg(args, kwargs, "tabsize", 8) * text.count("\t"), "a text")
    elif name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        hits = text.count(old) if old else len(text) + 1
        _refuse(len(text) + hits * max(0, len(new) - len(old)), "a replaced text")
    elif name in {"batch", "slice"}:
        _refuse(_int_arg(args, kwargs, "linecount" if name == "batch" else "slices", 0), "a count")
    elif name == "format":
        _check_format(text)


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 0 if getattr(func, "jinja_pass_arg", None) is None else 1  # env / eval_ctx first

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value, rest = args[skip], args[skip + 1 :]
        if name == "join":
            value = list(value)  # measured, then joined (it may be a generator)
            _refuse(_deep_len(value), "a joined text")
            args = (*args[:skip], value, *rest)
        else:
            _check_growth(name, value, rest, kwargs)
        return func(*args, **kwargs)

    return guarded


@jinja2.pass_context  # pass_context: never evaluated while compiling
def _emit(context: Context, value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset | Mapping):
        _refuse(_deep_len(value, _BUDGET.get().text), "a printed value")
    text = str(value)
    _spend(text=len(text))
    return text


@jinja2.pass_context
def _loop(context: Context, items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        _spend(steps=1)
        yield item


class _LessonSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _spend(steps=1)
        if isinstance(obj, types.BuiltinMethodType) and isinstance(obj.__self__, str):
            if obj.__name__ == "join" and args:
                args = (list(args[0]), *args[1:])
                _refuse(_deep_len(args[0]), "a joined text")
            _check_growth(obj.__name__, obj.__self__, args, kwargs)
        return super().call(context, obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        return _sized(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _sized(super().getitem(obj, argument))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format(value.__self__)
        return wrapped


def _sized(value: Any) -> Any:
    if isinstance(value, str | bytes | list | tuple | Mapping):
        _refuse(len(value), "a value")
    return value


def _environment() -> _LessonSandbox:
    env = _LessonSandbox(
        loader=jinja2.DictLoader({}),  # nothing to include: a template is one string
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown and prompts, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    del env.globals["lipsum"]  # placeholder text on demand: no use here, and a cheap way to stall
    for name in ("center", "indent", "replace", "join", "format", "batch", "slice"):
        env.filters[name] = _guarded_filter(name, env.filters[name])
    env.filters["_emit"], env.filters["_loop"] = _emit, _loop
    return env


ENV = _environment()


def parse(source: str) -> nodes.Template:
    """The template's syntax tree; ``jinja2.TemplateSyntaxError`` when it does not parse."""
    return ENV.parse(source)


def check(ast: nodes.Template) -> None:
    """Refuse, before anything renders, what the sandbox would refuse anyway when it can
    be seen in the source: file tags, ``_`` names, oversized constants."""
    for tag_node in ast.find_all(tuple(_FILE_TAGS)):
        tag = _FILE_TAGS[type(tag_node)]
        raise SecurityError(
            f"line {tag_node.lineno}: {{% {tag} %}} is not allowed (no other files)"
        )
    for lookup in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        for name in _literal_names(lookup):
            if any(part.startswith("_") for part in name.split(".")):
                raise SecurityError(f"line {lookup.lineno}: access to '{name}' is not allowed")
    for expr in ast.find_all(nodes.BinExpr):
        _fold(expr)
    for call in ast.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name == "range":
            for arg in call.args:
                count = _fold(arg)
                if isinstance(count, int) and count > MAX_RANGE:
                    raise SecurityError(
                        f"line {call.lineno}: range({count}) passes the limit of {MAX_RANGE:,}"
                    )


def _literal_names(node: nodes.Node) -> list[str]:
    if isinstance(node, nodes.Getattr):
        return [node.attr]
    if isinstance(node, nodes.Getitem):
        arg = node.arg
        return [arg.value] if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else []
    assert isinstance(node, nodes.Filter)
    if node.name not in _ATTRIBUTE_FILTERS:
        return []
    values = [*node.args, *(pair.value for pair in node.kwargs)]
    return [v.value for v in values if isinstance(v, nodes.Const) and isinstance(v.value, str)]


def _fold(node: nodes.Node) -> Any:
    """The value of a constant expression, computed with the sandbox's size checks
    (``SecurityError`` past a limit); ``None`` when it is not constant."""
    if isinstance(node, nodes.Const):
        return node.value
    if not isinstance(node, nodes.BinExpr):
        return None
    left, right = _fold(node.left), _fold(node.right)
    if left is None or right is None:
        return None
    try:
        return ENV.call_binop(None, node.operator, left, right)  # type: ignore[arg-type]
    except (ArithmeticError, TypeError, ValueError):
        return None  # 1/0 and the like fail when rendered, with Jinja's own message


def _instrument(ast: nodes.Template) -> nodes.Template:
    """Route every loop through ``_loop`` and every emitted value through ``_emit``,
    so the budget sees them (the sandbox has no hook for either)."""
    for loop in list(ast.find_all(nodes.For)):
        loop.iter = nodes.Filter(loop.iter, "_loop", [], [], None, None, lineno=loop.lineno)
    for output in list(ast.find_all(nodes.Output)):
        output.nodes = [
            nodes.Filter(
                nodes.Const(child.data) if isinstance(child, nodes.TemplateData) else child,
                "_emit",
                [],
                [],
                None,
                None,
                lineno=child.lineno,
            )
            for child in output.nodes
        ]
    return ast


def compile_template(source: str) -> jinja2.Template:
    """``source`` compiled in the sandbox, with the limits wired in."""
    return ENV.from_string(_instrument(parse(source)))


def render(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Render under a fresh budget. Every refusal is a ``jinja2.TemplateError``
    (``SecurityError`` for a limit), never a bare Python error."""
    token = _BUDGET.set(_Budget())
    try:
        return template.render(**context)
    except jinja2.TemplateError:
        raise
    except RecursionError as exc:
        raise SecurityError("too deeply nested or recursive") from exc
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        # range() past MAX_RANGE (OverflowError), or the template's own mistake (1/0, a
        # filter on the wrong type): one line, not a traceback.
        raise jinja2.TemplateRuntimeError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        _BUDGET.reset(token)
