"""What jsonb can hold, checked before PostgreSQL sees it."""

from __future__ import annotations

import math

import pytest

from app.domain.storable import MAX_DEPTH, UnstorableJsonError, check_storable
from app.handlers import HandlerError
from workers.engine import _as_output


@pytest.mark.parametrize(
    "value",
    [{"a": [1, 2.5, "x", None, True]}, "ünïcode 🚀", [], {"deep": [[[[{"x": 1}]]]]}, 10**40],
)
def test_storable_values_pass(value: object) -> None:
    check_storable(value)


@pytest.mark.parametrize(
    "value,where",
    [
        ({"a": [1, math.nan]}, "$.a[1]"),
        ({"a": math.inf}, "$.a"),
        ({"s": "a\x00b"}, "$.s"),
        ({"s": "\ud800"}, "$.s"),
        ({"\x00": 1}, "$"),
        ({1: "int key"}, "$"),
        ({"set": {1, 2}}, "$.set"),
        ({"obj": object()}, "$.obj"),
    ],
)
def test_unstorable_values_are_refused_with_their_path(value: object, where: str) -> None:
    with pytest.raises(UnstorableJsonError) as info:
        check_storable(value)
    assert str(info.value).endswith(f"at {where}")


def test_depth_is_bounded_without_recursion() -> None:
    value: object = 1
    for _ in range(100_000):
        value = [value]
    with pytest.raises(UnstorableJsonError, match=f"more than {MAX_DEPTH} levels"):
        check_storable(value)


def test_a_handler_output_that_cannot_be_stored_fails_the_node_for_good() -> None:
    with pytest.raises(HandlerError) as info:
        _as_output({"ratio": math.nan}, 1000)
    assert info.value.category == "validation" and not info.value.retryable
    assert _as_output(5, 1000) == {"result": 5}


def test_an_output_over_its_limit_fails_the_node_for_good_naming_the_limit() -> None:
    assert _as_output({"text": "é" * 44}, 100) == {"text": "é" * 44}  # 99 bytes in UTF-8, as stored
    with pytest.raises(HandlerError, match=r"101 bytes, over MAX_OUTPUT_BYTES \(100\)") as info:
        _as_output({"text": "é" * 45}, 100)
    assert info.value.category == "too_large" and not info.value.retryable
