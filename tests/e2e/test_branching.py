"""Branching: conditional nodes, when/branch guards, skip propagation, trigger rules, delay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient

from tests.e2e.conftest import unique


def states(detail: dict[str, Any]) -> dict[str, str]:
    return {n["node_id"]: n["status"] for n in detail["nodes"]}


ORDER_FLOW = [
    {
        "id": "check",
        "handler": "conditional",
        "config": {"condition": {"field": "total", "operator": "gt", "value": 100}},
    },
    {"id": "big", "handler": "log", "dependencies": ["check"], "branch": True, "config": {"message": "big order {id}"}},
    {"id": "small", "handler": "log", "dependencies": ["check"], "branch": False, "config": {"message": "small {id}"}},
    {"id": "after_big", "handler": "noop", "dependencies": ["big"]},
    {"id": "join", "handler": "noop", "dependencies": ["big", "small"], "trigger_rule": "none_failed_min_one_success"},
]


def test_both_branches_of_a_diamond(define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]) -> None:
    workflow = define(ORDER_FLOW)
    big = run(workflow["id"], {"id": 1, "total": 250})
    assert states(big) == {
        "check": "COMPLETED",
        "big": "COMPLETED",
        "small": "SKIPPED",
        "after_big": "COMPLETED",
        "join": "COMPLETED",
    }
    small = run(workflow["id"], {"id": 2, "total": 20})
    # the skip propagates under all_success; the join runs under none_failed_min_one_success
    assert states(small) == {
        "check": "COMPLETED",
        "big": "SKIPPED",
        "small": "COMPLETED",
        "after_big": "SKIPPED",
        "join": "COMPLETED",
    }
    assert big["status"] == small["status"] == "COMPLETED"


def test_when_guards_read_outputs_and_the_input(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define(
        [
            {"id": "score", "handler": "compute", "config": {"operation": "multiply", "a": "{{ input.n }}", "b": 10}},
            {"id": "high", "handler": "noop", "dependencies": ["score"], "when": "score.result >= 50 and input.vip"},
            {"id": "root_guard", "handler": "noop", "when": "input.vip == true"},
        ]
    )
    assert states(run(workflow["id"], {"n": 7, "vip": True})) == {
        "score": "COMPLETED",
        "high": "COMPLETED",
        "root_guard": "COMPLETED",
    }
    detail = run(workflow["id"], {"n": 7, "vip": False})
    assert states(detail) == {"score": "COMPLETED", "high": "SKIPPED", "root_guard": "SKIPPED"}
    logs = client.get(f"/api/v1/executions/{detail['id']}/logs", query_string={"node_id": "high"}).json["items"]
    assert "guard is false" in next(e for e in logs if e["event"] == "node.skipped")["details"]["reason"]["high"]


def test_every_trigger_rule(define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]) -> None:
    parents = [
        {"id": "ok", "handler": "noop"},
        {"id": "bad", "handler": "fail", "max_retries": 0},
        {"id": "gate", "handler": "conditional", "config": {"condition": {"field": "x", "operator": "exists"}}},
        {"id": "skipped", "handler": "noop", "dependencies": ["gate"], "branch": True},  # x is absent: skipped
    ]

    def child(node_id: str, rule: str, *deps: str) -> dict[str, Any]:
        return {"id": node_id, "handler": "noop", "dependencies": list(deps), "trigger_rule": rule}

    children = [
        child("all_success_ok", "all_success", "ok"),
        child("all_success_bad", "all_success", "ok", "bad"),
        child("all_failed", "all_failed", "bad"),
        child("all_failed_mixed", "all_failed", "bad", "ok"),
        child("all_done", "all_done", "ok", "bad", "skipped"),
        child("one_success", "one_success", "ok", "bad"),
        child("one_success_none", "one_success", "bad", "skipped"),
        child("one_failed", "one_failed", "ok", "bad"),
        child("one_failed_none", "one_failed", "ok", "skipped"),
        child("none_failed", "none_failed", "ok", "skipped"),
        child("none_failed_bad", "none_failed", "ok", "bad"),
        child("min_one_success", "none_failed_min_one_success", "ok", "skipped"),
        child("min_one_success_none", "none_failed_min_one_success", "skipped"),
        child("none_skipped", "none_skipped", "ok", "bad"),
        child("none_skipped_skip", "none_skipped", "ok", "skipped"),
    ]
    detail = run(define([*parents, *children])["id"])
    assert states(detail) == {
        "ok": "COMPLETED",
        "bad": "FAILED",
        "gate": "COMPLETED",
        "skipped": "SKIPPED",
        "all_success_ok": "COMPLETED",
        "all_success_bad": "UPSTREAM_FAILED",
        "all_failed": "COMPLETED",
        "all_failed_mixed": "SKIPPED",
        "all_done": "COMPLETED",
        "one_success": "COMPLETED",
        "one_success_none": "UPSTREAM_FAILED",
        "one_failed": "COMPLETED",
        "one_failed_none": "SKIPPED",
        "none_failed": "COMPLETED",
        "none_failed_bad": "UPSTREAM_FAILED",
        "min_one_success": "COMPLETED",
        "min_one_success_none": "SKIPPED",
        "none_skipped": "COMPLETED",
        "none_skipped_skip": "SKIPPED",
    }
    assert detail["status"] == "FAILED"  # a node failed; what ran after it does not change that


def test_a_cleanup_runs_after_a_failure_with_all_done(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define(
        [
            {"id": "charge", "handler": "fail", "config": {"message": "declined"}},
            {"id": "ship", "handler": "noop", "dependencies": ["charge"]},
            {
                "id": "cleanup",
                "handler": "log",
                "dependencies": ["charge", "ship"],
                "trigger_rule": "all_done",
                "config": {"message": "releasing stock for {order}"},
            },
        ]
    )
    detail = run(workflow["id"], {"order": "A-9"})
    assert states(detail) == {"charge": "FAILED", "ship": "UPSTREAM_FAILED", "cleanup": "COMPLETED"}
    assert detail["status"] == "FAILED"
    results = client.get(f"/api/v1/executions/{detail['id']}/results").json["results"]
    assert results["cleanup"]["message"] == "releasing stock for A-9"


def test_branch_and_guard_mistakes_are_caught_at_definition(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/workflows",
        json={
            "name": unique(),
            "nodes": [
                {"id": "a", "handler": "noop"},
                {"id": "c1", "handler": "conditional", "config": {"condition": {"field": "x", "operator": "exists"}}},
                {"id": "c2", "handler": "conditional", "config": {"condition": {"field": "x", "operator": "exists"}}},
                {"id": "no_cond", "handler": "noop", "dependencies": ["a"], "branch": True},
                {"id": "two_cond", "handler": "noop", "dependencies": ["c1", "c2"], "branch": False},
                {"id": "bad_when", "handler": "noop", "dependencies": ["a"], "when": "a.result =="},
                {"id": "far_when", "handler": "noop", "when": "a.result"},
                {"id": "rule", "handler": "noop", "trigger_rule": "sometimes"},
            ],
        },
    )
    assert response.status_code == 422
    found = {(p["node_id"], p["field"], p["code"]) for p in response.json["errors"]}
    assert found == {
        ("no_cond", "branch", "invalid_branch"),
        ("two_cond", "branch", "invalid_branch"),
        ("bad_when", "when", "invalid_template"),
        ("far_when", "when", "template_not_an_ancestor"),
        ("rule", "trigger_rule", "invalid_trigger_rule"),
    }


def test_delay_waits_without_holding_a_worker(
    client: FlaskClient,
    define: Callable[..., dict[str, Any]],
    trigger: Callable[..., dict[str, Any]],
    wait_node: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
) -> None:
    slow = define(
        [
            {"id": "wait", "handler": "delay", "config": {"seconds": 1.5}},
            {"id": "after", "handler": "noop", "dependencies": ["wait"]},
        ]
    )
    executions = [trigger(slow["id"]) for _ in range(4)]  # more delays than workers
    for execution in executions:
        node = wait_node(execution["id"], "wait", "DEFERRED")
        assert node["not_before"] is not None
    # meanwhile the two workers are free: another execution runs straight through
    quick = run(define([{"id": "now", "handler": "noop"}])["id"])
    assert quick["status"] == "COMPLETED"
    for execution in executions:
        detail = finish(execution["id"])
        assert detail["status"] == "COMPLETED"
        wait = next(n for n in detail["nodes"] if n["node_id"] == "wait")
        started = datetime.fromisoformat(detail["started_at"])
        assert (datetime.fromisoformat(wait["finished_at"]) - started).total_seconds() >= 1.5
    results = client.get(f"/api/v1/executions/{executions[0]['id']}/results").json["results"]
    assert results["wait"] == {"waited_seconds": 1.5}
