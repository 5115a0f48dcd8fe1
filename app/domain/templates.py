"""Templates in node configs: `{{ input.order_id }}`, `{{ fetch.body.user.id }}`, `${fetch.output.user.id}`.

A template is literal text with `{{ expression }}` slots. A string that is
exactly one slot resolves to the JSON value it names (a number stays a number);
in longer text each value is rendered as text (JSON for objects, lists,
booleans and null). Each slot is evaluated on its own and the literal text is
never parsed, so a value that itself contains `{{` is just text.

A delimiter that pairs with nothing is an error, not text: a `{{` (or `${`) never
closed, and, in text that uses `{{`, a `}}` that closes neither a slot nor two `{`
of the literal text. So JSON text (`{"a": {"b": "{{ x.id }}"}}`) and a lone `{` or
`}` stay text, and a `}}` in text without `{{` is ordinary text.

A slot that is a dotted path (`fetch-data.body.items.0`) is resolved directly:
keys and list indexes only, never attributes, and a miss names its path.
Anything richer (`input.name | upper`, `a.n * 2 > 10`) is a Jinja expression,
evaluated by an immutable sandbox with strict undefined, no constant folding,
no calls, a short list of filters and size-capped operators, filters and `~`:
a 500-character template cannot run for long or allocate much (a value it
builds is at most MAX_VALUE_SIZE characters or items, checked before a join
or a concatenation is built). Statements (`{% %}`) are not templates here.

peer-b's `${node.output.field}` means `{{ node.field }}`; `$${` is a literal `${`.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Undefined, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_CHARS = 500
MAX_VALUE_SIZE = 100_000  # characters, items or digits an operator may produce
INPUT = "input"
NODES = "nodes"  # nodes["fetch-data"].x, for ids a Jinja expression cannot spell

_ESCAPED_DOLLAR = "\x00"  # NUL never survives input checks, so it cannot collide
_DOLLAR = re.compile(r"\$\{([^{}]*)\}")
_DOLLAR_OPEN = re.compile(r"\$\{")
_BRACES = re.compile(r"\{|\}+")  # an opening brace, or a run of closing ones
_SLOT = re.compile(r"\{\{((?:(?!\}\}).)*)\}\}", re.S)
_ONE_SLOT = re.compile(r"^\s*\{\{((?:(?!\}\}).)*)\}\}\s*$", re.S)
_PATH = re.compile(r"^\s*([A-Za-z0-9_][A-Za-z0-9_-]*)((?:\.[A-Za-z0-9_-]+)*)\s*$")
_LITERALS = frozenset({"true", "false", "none", "True", "False", "None", "null"})
SAFE_FILTERS = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "int", "join", "last",
        "length", "list", "lower", "max", "min", "reject", "rejectattr", "round", "select", "selectattr",
        "sort", "string", "sum", "title", "tojson", "trim", "unique", "upper", "map", "items",
    }
)  # fmt: skip


class TemplateResolutionError(ValueError):
    """A template could not be resolved; the message names the template and the path."""


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() // 3  # about its decimal digits
    return len(value) if isinstance(value, str | list | tuple) else 0


def _too_large(what: str) -> SecurityError:
    return SecurityError(f"{what} would build a value over {MAX_VALUE_SIZE} characters or items")


class _BoundedCodeGenerator(CodeGenerator):
    """`a ~ b ~ c` joined by the environment, which measures the parts first."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _bounded_filter(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose result is at most MAX_VALUE_SIZE; `join` and `list` are measured
    before they build anything, `sum` adds numbers only (summing lists is quadratic)."""

    @functools.wraps(filter_)  # keeps jinja_pass_arg: Jinja still passes what it passed
    def bounded(*args: Any, **kwargs: Any) -> Any:
        passes_context = hasattr(filter_, "jinja_pass_arg")
        value = args[1] if passes_context else args[0]
        if name in ("join", "list") and not isinstance(value, Undefined):
            items = list(value)
            separator = args[2] if len(args) > (2 if passes_context else 1) else kwargs.get("d", "")
            size = len(items) if name == "list" else sum(len(str(x)) for x in items)
            size += len(str(separator)) * max(len(items) - 1, 0) if name == "join" else 0
            if size > MAX_VALUE_SIZE:
                raise _too_large(f"| {name}")
            args = (args[0], items, *args[2:]) if passes_context else (items, *args[1:])
        if name == "sum":
            start = kwargs.get("start", args[3] if len(args) > 3 else 0)
            if not isinstance(start, int | float):
                raise SecurityError("| sum adds numbers only in templates")
        result = filter_(*args, **kwargs)
        if _size(result) > MAX_VALUE_SIZE:
            raise _too_large(f"| {name}")
        return result

    return bounded


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """No calls, and operators and filters that cannot build anything huge."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})
    code_generator_class = _BoundedCodeGenerator

    def bounded_concat(self, parts: Iterable[Any]) -> str:
        texts = [str(part) for part in parts]
        if sum(map(len, texts)) > MAX_VALUE_SIZE:
            raise _too_large("~")
        return "".join(texts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            raise SecurityError("string formatting with % is not allowed in templates")
        if operator == "**":
            if not all(isinstance(x, int | float) for x in (left, right)) or abs(right) > 64 or _size(left) > 64:
                raise SecurityError("** is limited to small numbers in templates")
        elif operator == "*" and (isinstance(left, str | list | tuple) or isinstance(right, str | list | tuple)):
            count = right if isinstance(left, str | list | tuple) else left
            if isinstance(count, int) and _size(left if count is right else right) * max(count, 0) > MAX_VALUE_SIZE:
                raise SecurityError("repetition builds a value too large for a template")
        result = super().call_binop(context, operator, left, right)
        if _size(result) > MAX_VALUE_SIZE:
            raise SecurityError("the value is too large for a template")
        return result

    def call(self, context: Any, obj: Any, *args: Any, **kwargs: Any) -> Any:
        raise SecurityError("calls are not allowed in templates; use filters, e.g. {{ x | upper }}")

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`a.b` reads key b of a JSON object (or index b of a list), never an attribute:
        the values are JSON data, and `input.items` means the key, not dict.items."""
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        if isinstance(obj, list | tuple) and attribute.isascii() and attribute.isdigit() and int(attribute) < len(obj):
            return obj[int(attribute)]
        return self.undefined(obj=obj, name=attribute)


_ENV = _BoundedSandbox(undefined=StrictUndefined, autoescape=False, optimized=False)
_ENV.filters = {name: _bounded_filter(name, f) for name, f in _ENV.filters.items() if name in SAFE_FILTERS}
_ENV.globals.clear()


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "${" in value)


def _from_dollar(match: re.Match[str]) -> str:
    parts = match[1].strip().split(".")
    if len(parts) >= 2 and parts[0] != INPUT and parts[1] == "output":
        del parts[1]  # ${node.output.field} -> node.field
    return "{{ " + ".".join(parts) + " }}"


def normalise(text: str) -> str:
    """peer-b's `${...}` rewritten as `{{ ... }}` (`$${` stays a literal `${`, marked)."""
    return _DOLLAR.sub(_from_dollar, text.replace("$${", _ESCAPED_DOLLAR + "{"))


def _literal(text: str) -> str:
    return text.replace(_ESCAPED_DOLLAR, "$")


def _quoted(source: str, start: int, end: int | None = None) -> str:
    """A piece of a template for a message, as written (up to 30 characters)."""
    piece = source[start : start + 30 if end is None else end].replace(_ESCAPED_DOLLAR, "$$")
    return repr(piece if end is not None or len(source) - start <= 30 else piece + "...")


def _unpaired(text: str) -> str | None:
    """Why the template's delimiters do not pair up, or None when they do."""
    escaped = text.replace("$${", _ESCAPED_DOLLAR + "{")
    for opening in _DOLLAR_OPEN.finditer(escaped):
        if not _DOLLAR.match(escaped, opening.start()):
            return f"{_quoted(escaped, opening.start())} is not closed: `${{` needs a `}}` with no brace inside"
    source = _DOLLAR.sub(_from_dollar, escaped)
    depth, position = 0, 0  # depth: the literal text's `{` not closed yet
    for slot in [*_SLOT.finditer(source), None]:
        end = len(source) if slot is None else slot.start()
        unclosed = source.find("{{", position, end)
        if unclosed >= 0:  # no `}}` follows it, or _SLOT would have matched from there
            return f"{_quoted(source, unclosed)} is not closed: `{{{{` needs a `}}}}`"
        for brace in _BRACES.finditer(source, position, end):
            if brace[0] == "{":
                depth += 1
                continue
            if "{{" in text and len(brace[0]) - depth >= 2:
                before = _quoted(source, max(position, brace.start() - 25), brace.end())
                return f"{before} has a `}}}}` that closes no `{{{{`"
            depth = max(depth - len(brace[0]), 0)
        position = len(source) if slot is None else slot.end()
    return None


def walk(config: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, text) of every templated string in a config, keys included in the path."""
    if isinstance(config, Mapping):
        for key, value in config.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(config, list):
        for i, value in enumerate(config):
            yield from walk(value, f"{path}.{i}" if path else str(i))
    elif is_template(config):
        yield path, config


def _path(expression: str) -> tuple[str, list[str]] | None:
    """(root, keys) when the expression is a plain dotted path from a name, else None."""
    match = _PATH.match(expression)
    if not match or match[1] in _LITERALS or match[1].isdigit():
        return None
    return match[1], [k for k in match[2].split(".") if k]


@lru_cache(maxsize=4096)
def _expression_roots(expression: str) -> frozenset[str]:
    try:
        ast = _ENV.parse("{{ " + expression + " }}")
        roots = set(meta.find_undeclared_variables(ast)) - {NODES}  # also checks the filters exist
    except Exception as err:  # any failure here is the template's fault, reported as such
        raise TemplateResolutionError(f"{{{{{expression}}}}} does not parse: {err}") from err
    for item in ast.find_all(nodes.Getitem):
        if isinstance(item.node, nodes.Name) and item.node.name == NODES and isinstance(item.arg, nodes.Const):
            roots.add(str(item.arg.value))
    return frozenset(roots)


@lru_cache(maxsize=4096)
def references(text: str) -> frozenset[str]:
    """The root names a template reads: node ids, or `input`. TemplateResolutionError if it
    has a statement, a delimiter that pairs with nothing, or a slot that does not parse."""
    if "{%" in text or "{#" in text:
        raise TemplateResolutionError(
            f"template {text!r}: statements and comments ({{% %}}, {{# #}}) are not supported; "
            "use {{ expressions }}"
        )
    unpaired = _unpaired(text)
    if unpaired:
        raise TemplateResolutionError(f"template {text!r}: {unpaired}")
    roots: set[str] = set()
    for expression in _SLOT.findall(normalise(text)):
        path = _path(expression)
        roots |= {path[0]} if path else _expression_roots(expression)
    return frozenset(roots)


def _walk_path(context: Mapping[str, Any], root: str, keys: list[str], text: str) -> Any:
    if root not in context:
        missing = "the execution input" if root == INPUT else f"node {root!r} has no output (it did not complete)"
        raise TemplateResolutionError(f"template {text!r}: {missing}")
    value, walked = context[root], root
    for key in keys:
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isascii() and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise TemplateResolutionError(f"template {text!r}: no value at {walked}.{key}")
        walked = f"{walked}.{key}"
    return value


@lru_cache(maxsize=4096)
def _compiled(expression: str) -> Any:
    return _ENV.compile_expression(expression, undefined_to_none=False)


def _evaluate(expression: str, context: Mapping[str, Any], text: str) -> Any:
    path = _path(expression)
    if path:
        return _walk_path(context, path[0], path[1], text)
    try:
        value = _compiled(expression)(**{k: v for k, v in context.items() if k.isidentifier()}, **{NODES: context})
    except Exception as err:  # the expression's failure, named with the template
        raise TemplateResolutionError(f"template {text!r}: {type(err).__name__}: {err}") from err
    if isinstance(value, Undefined):
        raise TemplateResolutionError(f"template {text!r}: no value at {expression.strip()}")
    return value


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise TemplateResolutionError(f"{value} is not a JSON number")
    return json.dumps(value, default=str)


def render(text: str, context: Mapping[str, Any]) -> Any:
    """Resolve one templated string against {"input": ..., node_id: output, ...}."""
    references(text)  # refuses statements
    source = normalise(text)
    whole = _ONE_SLOT.match(source)
    if whole:
        return _evaluate(whole[1], context, text)
    parts, position = [], 0
    for slot in _SLOT.finditer(source):
        parts.append(_literal(source[position : slot.start()]))
        parts.append(_as_text(_evaluate(slot[1], context, text)))
        position = slot.end()
    parts.append(_literal(source[position:]))
    rendered = "".join(parts)
    if len(rendered) > MAX_VALUE_SIZE * 10:
        raise TemplateResolutionError(f"template {text!r}: renders to more than {MAX_VALUE_SIZE * 10} characters")
    return rendered


def resolve(config: Any, context: Mapping[str, Any]) -> Any:
    """A copy of the config with every templated string resolved."""
    if isinstance(config, Mapping):
        return {key: resolve(value, context) for key, value in config.items()}
    if isinstance(config, list):
        return [resolve(value, context) for value in config]
    if is_template(config):
        return render(config, context)
    return config


def config_references(config: Any) -> frozenset[str]:
    """Every root name the config's templates read (bad templates are reported at definition time)."""
    roots: set[str] = set()
    for _, text in walk(config):
        try:
            roots |= references(text)
        except TemplateResolutionError:
            continue
    return frozenset(roots)


def guard_references(expression: str) -> frozenset[str]:
    """The root names a `when` guard reads (TemplateResolutionError if it does not parse)."""
    return references("{{ " + expression + " }}")


def holds(expression: str, context: Mapping[str, Any]) -> bool:
    """Whether a guard expression (`check.result == true`, `nodes["a-b"].ok`) is true."""
    return bool(_evaluate(expression, context, expression))
