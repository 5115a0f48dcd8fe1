"""peer-a's rules for what a node reads and when it runs (shared/reference/peer-a-contract.md,
sections 3.5 and 4): its templates, its `condition` grammar and its `decision` comparison.
Pure: the callers hand in the outputs and the trigger's params.

A template is `{{ node.key }}`: exactly two segments of word characters. It renders as
Python prints the value (`True`, `None`, `{'a': 1}`), always as text, and one that names
no stored output (a node that did not complete, a missing key) stays exactly as written:
peer-a's clients rely on that (a condition compares the literal placeholder). `params` is
the trigger's params. Nothing else (filters, nested paths, `${...}`) is a template here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

PARAMS = "params"
TEMPLATE = re.compile(r"\{\{\s*(\w+)\.(\w+)\s*\}\}")
FALSE_WORDS = frozenset({"false", "0", "no"})


def python_text(value: Any) -> str:
    """A value as peer-a renders it: Python's str (True, None, {'a': 1}, 5.0)."""
    return value if isinstance(value, str) else str(value)


def references(text: str) -> frozenset[str]:
    """The node ids (and `params`) a text's templates read."""
    return frozenset(match[1] for match in TEMPLATE.finditer(text))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def config_references(config: Any) -> frozenset[str]:
    """Every node id (and `params`) a config's string values read; keys are never templates."""
    found: set[str] = set()
    for text in _strings(config):
        found |= references(text)
    return frozenset(found)


def render(text: str, outputs: Mapping[str, Any], params: Mapping[str, Any]) -> str:
    """The text with each template that names a stored value replaced by its rendering;
    the others left as written. What a substitution produces is not rendered again."""

    def value_of(match: re.Match[str]) -> str:
        node, key = match[1], match[2]
        source = outputs.get(node) if node in outputs else params if node == PARAMS else None
        if isinstance(source, Mapping) and key in source:
            return python_text(source[key])
        return match[0]

    return TEMPLATE.sub(value_of, text)


def resolve(config: Any, outputs: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """A copy of the config with every string value rendered (object keys are not)."""
    if isinstance(config, str):
        return render(config, outputs, params)
    if isinstance(config, Mapping):
        return {key: resolve(value, outputs, params) for key, value in config.items()}
    if isinstance(config, list):
        return [resolve(value, outputs, params) for value in config]
    return config


def _side(text: str) -> str:
    return text.strip().strip("'\"")


def condition_holds(condition: str | None, outputs: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """Whether a node with this `condition` runs (peer-a 4.3): rendered, then `a == b` and
    `a != b` compare text (quotes and spaces trimmed), else true/1/yes run, false/0/no and
    an empty text skip, and any other text runs."""
    if not condition:
        return True
    rendered = render(condition, outputs, params).strip()
    for operator, equal in (("==", True), ("!=", False)):
        if operator in rendered:
            left, right = rendered.split(operator)[:2]
            return (_side(left) == _side(right)) == equal
    word = rendered.lower()
    return bool(word) and word not in FALSE_WORDS  # true/1/yes, and any other text, run


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def decide(value_a: Any, operator: str, value_b: Any) -> bool:
    """peer-a's `decision` (3.5): `==`/`!=` on the trimmed text renderings, the order
    operators on numbers (false if either is not one), any other operator false."""
    if operator in ("==", "!="):
        same = python_text(value_a).strip() == python_text(value_b).strip()
        return same if operator == "==" else not same
    a, b = _number(value_a), _number(value_b)
    if a is None or b is None:
        return False
    match operator:
        case ">":
            return a > b
        case "<":
            return a < b
        case ">=":
            return a >= b
        case "<=":
            return a <= b
    return False


def dlq_category(error_class: str, message: str) -> str:
    """peer-a's category of a dead letter, from words in the error's class and text."""
    words = f"{error_class} {message}".lower()
    if any(w in words for w in ("timeout", "connection", "temporary", "unavailable", "retry")):
        return "transient"
    if any(w in words for w in ("validation", "invalid", "schema", "parsing", "value")):
        return "validation"
    if any(w in words for w in ("ratelimit", "rate_limit", "quota", "throttl")):
        return "resource"
    if any(w in error_class.lower() for w in ("redis", "postgres", "database", "sql")):
        return "infrastructure"
    return "unknown"
