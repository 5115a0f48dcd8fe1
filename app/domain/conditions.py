"""Conditions for the `conditional` handler: {field, operator, value}, or all/any lists.

`matches` uses RE2, which runs in time linear in the input: a user's pattern
cannot hang a worker (no catastrophic backtracking).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import re2

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists", "matches")
_MISSING = object()


class ConditionError(ValueError):
    """A condition that cannot be evaluated (a bad shape, a comparison of unlike values)."""


def lookup(document: Any, field: str) -> Any:
    """The value at a dotted path (keys, or list indexes), or _MISSING."""
    value = document
    for key in field.split(".") if field else []:
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isascii() and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return _MISSING
    return value


def evaluate(condition: Mapping[str, Any], document: Any) -> bool:
    """Evaluate a condition against a document (an object, usually the node's input)."""
    if "all" in condition:
        return all(evaluate(c, document) for c in condition["all"])
    if "any" in condition:
        return any(evaluate(c, document) for c in condition["any"])
    operator = condition.get("operator")
    if operator not in OPERATORS:
        raise ConditionError(f"unknown operator {operator!r}")
    actual = lookup(document, str(condition.get("field", "")))
    if operator == "exists":
        return (actual is not _MISSING) == bool(condition.get("value", True))
    if actual is _MISSING:
        return operator in ("ne", "not_in")  # a missing field equals nothing
    expected = condition.get("value")
    try:
        return _compare(operator, actual, expected)
    except TypeError as err:
        raise ConditionError(f"cannot apply {operator} to {actual!r} and {expected!r}") from err


def _same(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, false is not 0 (Python says they are)."""
    return isinstance(a, bool) == isinstance(b, bool) and bool(a == b)


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    if operator == "eq":
        return _same(actual, expected)
    if operator == "ne":
        return not _same(actual, expected)
    if operator in ("gt", "gte", "lt", "lte"):
        if isinstance(actual, bool) or isinstance(expected, bool):
            raise TypeError("booleans are not ordered")
        return {"gt": actual > expected, "gte": actual >= expected, "lt": actual < expected, "lte": actual <= expected}[
            operator
        ]
    if operator in ("in", "not_in"):
        if isinstance(expected, list):
            found = any(_same(actual, item) for item in expected)
        elif isinstance(expected, str) and isinstance(actual, str):
            found = actual in expected
        else:
            raise TypeError("`in` needs a list, or text in text")
        return found == (operator == "in")
    if operator == "contains":
        if isinstance(actual, list):
            return any(_same(item, expected) for item in actual)
        if (isinstance(actual, str) and isinstance(expected, str)) or isinstance(actual, Mapping):
            return expected in actual
        raise TypeError("`contains` needs a list, text in text, or an object")
    # matches
    if not isinstance(actual, str) or not isinstance(expected, str):
        raise TypeError("`matches` needs text and a pattern")
    try:
        return re2.search(expected, actual) is not None
    except re2.error as err:
        raise ConditionError(f"bad pattern {expected!r}: {err}") from err


def problems(condition: Any, path: str = "condition") -> list[tuple[str, str]]:
    """(field, message) for each structural problem, checked at definition time."""
    if not isinstance(condition, Mapping):
        return [(path, "a condition is an object")]
    for group in ("all", "any"):
        if group in condition:
            items = condition[group]
            if not isinstance(items, list) or not items:
                return [(f"{path}.{group}", "a non-empty list of conditions")]
            return [p for i, item in enumerate(items) for p in problems(item, f"{path}.{group}.{i}")]
    found = []
    if condition.get("operator") not in OPERATORS:
        found.append((f"{path}.operator", f"one of {', '.join(OPERATORS)}"))
    if not isinstance(condition.get("field"), str) or not condition.get("field"):
        found.append((f"{path}.field", "a dotted path into the input"))
    if condition.get("operator") == "matches" and isinstance(condition.get("value"), str):
        try:
            re2.compile(condition["value"])
        except re2.error as err:
            found.append((f"{path}.value", f"not a valid RE2 pattern: {err}"))
    return found
