"""Whole runs through the API with real RQ workers: shapes of DAG, data, failure."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient


def times(detail: dict[str, Any]) -> dict[str, tuple[datetime, datetime]]:
    return {
        n["node_id"]: (datetime.fromisoformat(n["started_at"]), datetime.fromisoformat(n["finished_at"]))
        for n in detail["nodes"]
    }


def assert_respects_dependencies(detail: dict[str, Any], nodes: list[dict[str, Any]]) -> None:
    """Every node started after each of its dependencies finished."""
    spans = times(detail)
    for node in nodes:
        for dep in node.get("dependencies", []):
            assert spans[dep][1] <= spans[node["id"]][0], f"{node['id']} started before {dep} finished"


def test_linear_chain(define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]) -> None:
    nodes = [{"id": "n0", "handler": "noop", "config": {"step": 0}}] + [
        {"id": f"n{i}", "handler": "noop", "dependencies": [f"n{i - 1}"], "config": {"step": i}} for i in range(1, 6)
    ]
    detail = run(define(nodes)["id"])
    assert detail["status"] == "COMPLETED"
    assert detail["progress"]["completed"] == 6 and detail["progress"]["percent"] == 100.0
    assert_respects_dependencies(detail, nodes)


def test_fan_out_fan_in_and_results(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    nodes = [
        {"id": "start", "handler": "log", "config": {"message": "order {order_id} received"}},
        *[
            {
                "id": f"calc{i}",
                "handler": "compute",
                "dependencies": ["start"],
                "config": {"operation": "multiply", "a": i, "b": 10},
            }
            for i in range(8)
        ],
        {"id": "join", "handler": "noop", "dependencies": [f"calc{i}" for i in range(8)]},
    ]
    detail = run(define(nodes)["id"], {"order_id": "A-17"})
    assert detail["status"] == "COMPLETED"
    assert_respects_dependencies(detail, nodes)
    results = client.get(f"/api/v1/executions/{detail['id']}/results").json
    assert results["status"] == "COMPLETED"
    assert results["results"]["start"] == {"message": "order A-17 received", "level": "info"}
    assert {results["results"][f"calc{i}"]["result"] for i in range(8)} == {i * 10 for i in range(8)}
    join = next(n for n in detail["nodes"] if n["node_id"] == "join")
    assert join["attempt"] == 1  # dispatched once, however the eight parents raced


def test_diamond(define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]) -> None:
    nodes = [
        {"id": "a", "handler": "noop"},
        {"id": "b", "handler": "noop", "dependencies": ["a"]},
        {"id": "c", "handler": "noop", "dependencies": ["a"]},
        {"id": "d", "handler": "noop", "dependencies": ["b", "c"]},
    ]
    detail = run(define(nodes)["id"])
    assert detail["status"] == "COMPLETED"
    assert_respects_dependencies(detail, nodes)


def test_a_thousand_node_dag(define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]) -> None:
    middle = [{"id": f"m{i}", "handler": "noop", "dependencies": ["root"]} for i in range(998)]
    nodes = [
        {"id": "root", "handler": "noop"},
        *middle,
        {"id": "sink", "handler": "noop", "dependencies": [m["id"] for m in middle]},
    ]
    detail = run(define(nodes)["id"], timeout=120)
    assert detail["status"] == "COMPLETED"
    assert detail["progress"]["completed"] == 1000
    sink = next(n for n in detail["nodes"] if n["node_id"] == "sink")
    assert sink["attempt"] == 1
    assert_respects_dependencies(detail, nodes)


def test_a_failing_node_fails_the_execution_and_its_descendants_only(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    nodes = [
        {"id": "ok", "handler": "noop"},
        {"id": "boom", "handler": "compute", "config": {"operation": "divide", "a": 1, "b": 0}},
        {"id": "after_boom", "handler": "noop", "dependencies": ["boom"]},
        {"id": "after_ok", "handler": "noop", "dependencies": ["ok"]},
        {"id": "join", "handler": "noop", "dependencies": ["after_ok", "after_boom"]},
    ]
    detail = run(define(nodes)["id"])
    assert detail["status"] == "FAILED"
    states = {n["node_id"]: n["status"] for n in detail["nodes"]}
    assert states == {
        "ok": "COMPLETED",
        "boom": "FAILED",
        "after_boom": "UPSTREAM_FAILED",
        "after_ok": "COMPLETED",
        "join": "UPSTREAM_FAILED",
    }
    boom = next(n for n in detail["nodes"] if n["node_id"] == "boom")
    assert "division by zero" in boom["error"]["message"] and boom["error"]["retryable"] is False
    assert detail["error"]["reason"] == "node_failed"
    results = client.get(f"/api/v1/executions/{detail['id']}/results").json["results"]
    assert set(results) == {"ok", "after_ok"}
