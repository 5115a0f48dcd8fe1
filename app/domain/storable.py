"""JSON values PostgreSQL can store: no NUL, no lone surrogates, no NaN, bounded depth."""

from __future__ import annotations

import math
import re
from typing import Any

MAX_DEPTH = 64
BAD_TEXT = re.compile(r"[\x00\ud800-\udfff]")


class UnstorableJsonError(ValueError):
    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{message} at {path}" if path else message)


def check_storable(value: Any) -> None:
    """Raise UnstorableJsonError for anything jsonb cannot hold: NaN or infinite
    numbers, NUL characters, lone surrogates, non-JSON types, or nesting deeper
    than MAX_DEPTH. Iterative, so depth cannot exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UnstorableJsonError(f"nested more than {MAX_DEPTH} levels deep", path)
        if isinstance(item, str):
            if BAD_TEXT.search(item):
                raise UnstorableJsonError("a string holds a NUL character or a lone surrogate", path)
        elif isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str) or BAD_TEXT.search(key):
                    raise UnstorableJsonError("a key is not text, or holds a NUL or a lone surrogate", path)
                stack.append((sub, f"{path}.{key}", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((sub, f"{path}[{i}]", depth + 1) for i, sub in enumerate(item))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise UnstorableJsonError(f"{item} is not a JSON number", path)
        elif item is not None and not isinstance(item, int):  # bool is an int
            raise UnstorableJsonError(f"a {type(item).__name__} is not JSON", path)
