"""data_transform, transform, aggregate, conditional, delay and unreliable, called through the registry."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from app.handlers import HandlerError, NodeContext, registry
from app.handlers.registry import Defer


def context(input: dict[str, Any] | None = None, *, attempt: int = 1, woke_from: Any = None) -> NodeContext:
    return NodeContext(uuid.uuid4(), "n1", attempt, input or {}, woke_from=woke_from)


def run(name: str, config: dict[str, Any], ctx: NodeContext | None = None) -> Any:
    loaded = registry.load_config(name, config)
    return registry.get(name).func(loaded, ctx or context())


def fails(name: str, config: dict[str, Any], ctx: NodeContext | None = None) -> HandlerError:
    with pytest.raises(HandlerError) as info:
        run(name, config, ctx)
    return info.value


ORDER = {
    "id": 7,
    "customer": {"name": "Ann", "email": "ann@example.com"},
    "items": [{"sku": "A-1", "price": 5}, {"sku": "B-7", "price": 12}],
    "internal": "x",
}


# data_transform


def test_data_transform_applies_steps_in_order_to_an_explicit_input() -> None:
    steps = [
        {"type": "omit", "fields": ["internal"]},
        {"type": "rename", "from": "id", "to": "order_id"},
        {"type": "set", "key": "source", "value": {"kind": "web"}},
        {"type": "query", "expression": "items[?price > `10`].sku", "into": "expensive"},
        {"type": "pick", "fields": ["order_id", "source", "expensive", "absent"]},
    ]
    output = run("data_transform", {"input": ORDER, "transforms": steps}, context({"ignored": True}))
    assert output == {"result": {"order_id": 7, "source": {"kind": "web"}, "expensive": ["B-7"]}}


def test_data_transform_reads_the_execution_input_when_input_is_absent() -> None:
    steps = [{"type": "pick", "fields": ["id", "customer"]}, {"type": "set", "key": "seen", "value": True}]
    output = run("data_transform", {"transforms": steps}, context(ORDER))
    assert output == {"result": {"id": 7, "customer": {"name": "Ann", "email": "ann@example.com"}, "seen": True}}


def test_a_query_without_into_replaces_the_document() -> None:
    output = run("data_transform", {"input": ORDER, "transforms": [{"type": "query", "expression": "items[].price"}]})
    assert output == {"result": [5, 12]}


def test_a_query_can_reduce_the_document_to_a_scalar() -> None:
    steps = [{"type": "query", "expression": "sum(items[].price)"}]
    assert run("data_transform", {"input": ORDER, "transforms": steps}) == {"result": 17}


def test_a_query_into_a_key_keeps_the_rest_of_the_document() -> None:
    steps = [{"type": "query", "expression": "customer.name", "into": "who"}]
    output = run("data_transform", {"input": {"customer": {"name": "Ann"}}, "transforms": steps})
    assert output == {"result": {"customer": {"name": "Ann"}, "who": "Ann"}}


def test_renaming_an_absent_key_leaves_the_document_alone() -> None:
    steps = [{"type": "rename", "from": "nope", "to": "other"}]
    assert run("data_transform", {"input": {"a": 1}, "transforms": steps}) == {"result": {"a": 1}}


def test_data_transform_does_not_mutate_the_explicit_input() -> None:
    document = copy.deepcopy(ORDER)
    steps = [
        {"type": "rename", "from": "customer", "to": "buyer"},
        {"type": "set", "key": "id", "value": 8},
        {"type": "omit", "fields": ["items"]},
    ]
    loaded = registry.load_config("data_transform", {"input": document, "transforms": steps})
    output = registry.get("data_transform").func(loaded, context())
    output["result"]["buyer"]["name"] = "Changed"
    assert loaded["input"] == ORDER
    assert document == ORDER


def test_data_transform_does_not_mutate_the_execution_input() -> None:
    execution_input = copy.deepcopy(ORDER)
    steps = [{"type": "set", "key": "id", "value": 8}, {"type": "rename", "from": "customer", "to": "buyer"}]
    output = run("data_transform", {"transforms": steps}, context(execution_input))
    output["result"]["buyer"]["name"] = "Changed"
    assert execution_input == ORDER


@pytest.mark.parametrize(
    "step",
    [
        {"type": "pick", "fields": ["a"]},
        {"type": "omit", "fields": ["a"]},
        {"type": "rename", "from": "a", "to": "b"},
        {"type": "set", "key": "a", "value": 1},
        {"type": "query", "expression": "a", "into": "b"},
    ],
)
def test_a_step_needing_an_object_fails_on_a_list(step: dict[str, Any]) -> None:
    steps = [{"type": "query", "expression": "items"}, step]
    error = fails("data_transform", {"input": ORDER, "transforms": steps})
    assert error.category == "validation"
    assert not error.retryable
    assert "transforms[1] needs an object" in error.message and "list" in error.message


@pytest.mark.parametrize(
    "transforms,mentions",
    [
        ([{"type": "rename", "from": "a"}], "to"),
        ([{"type": "rename", "to": "b"}], "from"),
        ([{"type": "pick"}], "fields"),
        ([{"type": "set", "value": 1}], "key"),
        ([{"type": "query"}], "expression"),
        ([{"type": "query", "expression": "items[?"}], "not a JMESPath expression"),
        ([{"type": "flatten"}], "type"),
        ([], "transforms"),
    ],
)
def test_data_transform_rejects_a_bad_config_at_load_time(transforms: list[dict[str, Any]], mentions: str) -> None:
    with pytest.raises(HandlerError) as info:
        registry.load_config("data_transform", {"input": {}, "transforms": transforms})
    assert info.value.category == "validation"
    assert info.value.message.startswith("invalid config:")
    assert mentions in info.value.message


# transform


@pytest.mark.parametrize(
    "config,expected",
    [
        ({"transform_type": "uppercase", "input": "Hello world"}, "HELLO WORLD"),
        ({"transform_type": "lowercase", "input": "Hello World"}, "hello world"),
        ({"transform_type": "title", "input": "hello big world"}, "Hello Big World"),
        ({"transform_type": "strip", "input": "  padded \n"}, "padded"),
        ({"transform_type": "reverse", "input": "abc"}, "cba"),
        ({"transform_type": "reverse", "input": [1, "b", None]}, [None, "b", 1]),
        ({"transform_type": "length", "input": "hello"}, 5),
        ({"transform_type": "length", "input": [1, 2, 3]}, 3),
        ({"transform_type": "split", "input": " a  b\tc "}, ["a", "b", "c"]),
        ({"transform_type": "split", "input": "a,b,,c", "separator": ","}, ["a", "b", "", "c"]),
        ({"transform_type": "replace", "input": "a-b-c", "old": "-", "new": "+"}, "a+b+c"),
        ({"transform_type": "replace", "input": "a-b-c", "old": "-"}, "abc"),
        ({"transform_type": "uppercase", "input": 12.5}, "12.5"),
    ],
)
def test_transform(config: dict[str, Any], expected: Any) -> None:
    assert run("transform", config) == {"result": expected}


def test_replace_without_old_fails() -> None:
    error = fails("transform", {"transform_type": "replace", "input": "abc", "new": "x"})
    assert error.category == "validation"
    assert "old" in error.message


def test_transform_rejects_an_unknown_type_at_load_time() -> None:
    with pytest.raises(HandlerError) as info:
        registry.load_config("transform", {"transform_type": "shout", "input": "x"})
    assert info.value.category == "validation" and "transform_type" in info.value.message


# aggregate


@pytest.mark.parametrize(
    "kind,inputs,expected",
    [
        ("sum", [1, 2, 3.5], 6.5),
        ("sum", [], 0),
        ("count", [1, "a", None], 3),
        ("count", [], 0),
        ("min", [4, -2, 9], -2),
        ("max", [4, -2, 9.5], 9.5),
        ("avg", [1, 2, 6], 3),
        ("avg", [1, 2], 1.5),
        ("concat", ["ab", "c", "d"], "abcd"),
        ("concat", [[1, 2], [], [3]], [1, 2, 3]),
        ("list", [1, "a", None], [1, "a", None]),
        ("merge", [{"a": 1, "b": 1}, {"b": 2}, {"c": 3}], {"a": 1, "b": 2, "c": 3}),
    ],
)
def test_aggregate(kind: str, inputs: list[Any], expected: Any) -> None:
    assert run("aggregate", {"aggregate_type": kind, "inputs": inputs}) == {"result": expected}


@pytest.mark.parametrize(
    "kind,inputs,mentions",
    [
        ("avg", [], "avg of nothing"),
        ("min", [], "min of nothing"),
        ("sum", [1, "2"], "sum needs numbers"),
        ("max", [1, None], "max needs numbers"),
        ("sum", [1, True], "sum needs numbers"),
        ("avg", [False, True], "avg needs numbers"),
        ("merge", [{"a": 1}, [1]], "merge needs objects"),
    ],
)
def test_aggregate_failures(kind: str, inputs: list[Any], mentions: str) -> None:
    error = fails("aggregate", {"aggregate_type": kind, "inputs": inputs})
    assert error.category == "validation"
    assert mentions in error.message and "'n1'" in error.message


# conditional


@pytest.mark.parametrize("total,expected", [(150, True), (50, False)])
def test_conditional_reads_the_execution_input(total: int, expected: bool) -> None:
    condition = {"field": "order.total", "operator": "gt", "value": 100}
    assert run("conditional", {"condition": condition}, context({"order": {"total": total}})) == {"result": expected}


@pytest.mark.parametrize("status,expected", [("paid", True), ("open", False)])
def test_conditional_reads_its_input_when_given(status: str, expected: bool) -> None:
    condition = {"field": "status", "operator": "eq", "value": "paid"}
    ctx = context({"status": "paid" if status == "open" else "open"})
    assert run("conditional", {"condition": condition, "input": {"status": status}}, ctx) == {"result": expected}


def test_conditional_turns_a_runtime_condition_error_into_a_validation_failure() -> None:
    condition = {"field": "total", "operator": "gt", "value": 100}
    error = fails("conditional", {"condition": condition}, context({"total": "lots"}))
    assert error.category == "validation"
    assert not error.retryable
    assert "'n1'" in error.message and "cannot apply gt" in error.message


def test_conditional_rejects_a_malformed_condition_at_load_time() -> None:
    with pytest.raises(HandlerError) as info:
        registry.load_config("conditional", {"condition": {"all": [{"field": "x", "operator": "like"}]}})
    assert info.value.category == "validation"
    assert "all.0.operator" in info.value.message


# delay


@pytest.mark.parametrize("seconds", [0.5, 30, 86400])
def test_delay_defers_for_its_seconds_on_the_first_run(seconds: float) -> None:
    with pytest.raises(Defer) as info:
        run("delay", {"seconds": seconds})
    assert info.value.seconds == seconds


def test_delay_returns_once_woken() -> None:
    assert run("delay", {"seconds": 30}, context(woke_from="2030-01-01T00:00:00Z")) == {"waited_seconds": 30}


def test_a_zero_delay_returns_at_once() -> None:
    assert run("delay", {"seconds": 0}) == {"waited_seconds": 0}


@pytest.mark.parametrize("seconds", [-1, 7 * 24 * 3600 + 1])
def test_delay_rejects_seconds_out_of_range(seconds: float) -> None:
    with pytest.raises(HandlerError) as info:
        registry.load_config("delay", {"seconds": seconds})
    assert info.value.category == "validation"


# unreliable


@pytest.mark.parametrize("attempt", range(1, 21))
def test_unreliable_with_rate_zero_never_fails(attempt: int) -> None:
    assert run("unreliable", {"failure_rate": 0}, context(attempt=attempt)) == {"ok": True, "attempt": attempt}


@pytest.mark.parametrize("attempt", range(1, 21))
def test_unreliable_with_rate_one_always_fails_retryably(attempt: int) -> None:
    error = fails("unreliable", {"failure_rate": 1}, context(attempt=attempt))
    assert error.retryable
    assert f"failed attempt {attempt}" in error.message


def outcome(config: dict[str, Any], execution_id: uuid.UUID, attempt: int) -> bool:
    """True when the attempt succeeds."""
    try:
        run("unreliable", config, NodeContext(execution_id, "n1", attempt, {}))
    except HandlerError:
        return False
    return True


def test_unreliable_is_deterministic_per_seed_execution_node_and_attempt() -> None:
    execution_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    config = {"failure_rate": 0.5, "seed": 42}
    first = [outcome(config, execution_id, attempt) for attempt in range(1, 41)]
    again = [outcome(config, execution_id, attempt) for attempt in range(1, 41)]
    assert first == again
    assert True in first and False in first
    other_seed = [outcome({**config, "seed": 43}, execution_id, attempt) for attempt in range(1, 41)]
    assert other_seed != first


def test_unreliable_fails_about_as_often_as_its_rate() -> None:
    execution_id = uuid.uuid4()
    failures = sum(not outcome({"failure_rate": 0.5}, execution_id, attempt) for attempt in range(1, 201))
    assert 60 <= failures <= 140
