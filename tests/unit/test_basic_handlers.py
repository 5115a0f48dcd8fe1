"""noop, log and compute, called directly."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.handlers import HandlerError, NodeContext, registry


def run(name: str, config: dict[str, Any], input: dict[str, Any] | None = None) -> tuple[Any, NodeContext]:
    ctx = NodeContext(uuid.uuid4(), "n1", 1, input or {})
    loaded = registry.load_config(name, config)
    return registry.get(name).func(loaded, ctx), ctx


@pytest.mark.parametrize(
    "operation,a,b,expected",
    [
        ("add", 2, 3, 5),
        ("subtract", 2, 3, -1),
        ("multiply", 2.5, 4, 10),
        ("divide", 7, 2, 3.5),
        ("power", 2, 10, 1024),
        ("modulo", 7, 3, 1),
        ("min", 7, 3, 3),
        ("max", 7, 3, 7),
    ],
)
def test_compute(operation: str, a: float, b: float, expected: float) -> None:
    output, _ = run("compute", {"operation": operation, "a": a, "b": b})
    assert output == {"result": expected}


def test_compute_division_by_zero_is_a_permanent_failure_naming_the_node() -> None:
    with pytest.raises(HandlerError) as info:
        run("compute", {"operation": "divide", "a": 1, "b": 0})
    assert not info.value.retryable
    assert "'n1'" in info.value.message and "division by zero" in info.value.message


def test_compute_without_a_real_result_fails() -> None:
    with pytest.raises(HandlerError):
        run("compute", {"operation": "power", "a": -8, "b": 0.5})


def test_compute_rejects_a_bad_config_at_run_time() -> None:
    with pytest.raises(HandlerError) as info:
        run("compute", {"operation": "sqrt", "a": "x"})
    assert info.value.category == "validation"
    assert "operation" in info.value.message and "a" in info.value.message


def test_log_fills_placeholders_from_input_and_records_a_line() -> None:
    output, ctx = run("log", {"message": "order {order_id} for {who} ({missing})"}, {"order_id": 7, "who": "ann"})
    assert output == {"message": "order 7 for ann ({missing})", "level": "info"}
    assert [(line.level, line.message) for line in ctx.logs] == [("info", "order 7 for ann ({missing})")]


def test_log_placeholders_cannot_reach_attributes() -> None:
    output, _ = run("log", {"message": "{x.__class__} {x}"}, {"x": "v"})
    assert output["message"] == "{x.__class__} v"


def test_noop_outputs_its_config() -> None:
    output, _ = run("noop", {"data": [1, 2]})
    assert output == {"data": [1, 2]}


def test_config_problems_point_at_the_field_and_skip_templated_values() -> None:
    problems = registry.config_problems("n1", "compute", {"operation": "sqrt", "a": "{{ input.a }}", "b": "x"})
    fields = sorted(p.field for p in problems)
    assert fields == ["config.b", "config.operation"]
    assert all(p.node_id == "n1" and p.code == "invalid_config" for p in problems)
