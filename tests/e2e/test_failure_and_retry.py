"""Failures are contained and visible; retries are deliberate and wait in PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient

from app.config import Settings
from tests.e2e.conftest import runs


def node_of(detail: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(n for n in detail["nodes"] if n["node_id"] == node_id)


def logs(client: FlaskClient, execution_id: str, **query: Any) -> list[dict[str, Any]]:
    return client.get(f"/api/v1/executions/{execution_id}/logs", query_string={"limit": 1000, **query}).json["items"]


def test_a_retryable_failure_retries_with_capped_backoff(
    client: FlaskClient, settings: Settings, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define(
        [
            {
                "id": "call",
                "handler": "flaky",
                "config": {"fail_times": 2},
                "retry": {"max_attempts": 3, "backoff_seconds": 0.4, "max_backoff_seconds": 0.5},
            }
        ]
    )
    detail = run(workflow["id"])
    call = node_of(detail, "call")
    assert (detail["status"], call["status"], call["attempt"], call["error"]) == ("COMPLETED", "COMPLETED", 3, None)
    attempts = [at for what, _, at in runs(settings.redis_url, detail["id"], "call")]
    assert len(attempts) == 3
    waits = [e for e in logs(client, detail["id"], node_id="call") if e["event"] == "node.up_for_retry"]
    # full jitter: each wait is somewhere in [0, min(cap, base * 2^(n-1))]
    assert [w["details"]["next_attempt"] for w in waits] == [2, 3]
    assert 0 <= waits[0]["details"]["retry_in_seconds"] <= 0.4
    assert 0 <= waits[1]["details"]["retry_in_seconds"] <= 0.5
    for wait, next_start in zip(waits, attempts[1:], strict=True):
        failed_at = datetime.fromisoformat(wait["created_at"]).timestamp()
        assert next_start >= failed_at + wait["details"]["retry_in_seconds"] - 0.05  # waited out, in PostgreSQL


def test_retry_after_is_honoured(
    client: FlaskClient, settings: Settings, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "call", "handler": "flaky", "config": {"fail_times": 1, "retry_after": 1.5}}])
    detail = run(workflow["id"])
    assert detail["status"] == "COMPLETED"
    (first, second) = [at for _, _, at in runs(settings.redis_url, detail["id"], "call")]
    assert second - first >= 1.5
    (wait,) = [e for e in logs(client, detail["id"]) if e["event"] == "node.up_for_retry"]
    assert wait["details"]["retry_in_seconds"] == 1.5 and wait["level"] == "warning"


def test_a_permanent_failure_is_not_retried_and_is_dead_lettered(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define(
        [
            {
                "id": "charge",
                "handler": "fail",
                "config": {"message": "card declined", "category": "http_4xx"},
                "retry": {"max_attempts": 5},
            }
        ]
    )
    detail = run(workflow["id"])
    charge = node_of(detail, "charge")
    assert (detail["status"], charge["status"], charge["attempt"]) == ("FAILED", "FAILED", 1)
    assert charge["error"] == {
        "type": "HandlerError",
        "category": "http_4xx",
        "message": "card declined",
        "retryable": False,
    }
    letters = client.get("/api/v1/admin/dead-letters", query_string={"execution_id": detail["id"]}).json["items"]
    assert [(d["node_id"], d["category"], d["attempts"], d["error_class"]) for d in letters] == [
        ("charge", "http_4xx", 1, "HandlerError")
    ]
    assert "HandlerError: card declined" in letters[0]["traceback"]
    failed = [e for e in logs(client, detail["id"]) if e["event"] == "node.failed"]
    assert failed[0]["details"]["retry"] == "not retryable"


def test_exhausted_attempts_fail_for_good(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define(
        [
            {
                "id": "call",
                "handler": "flaky",
                "config": {"fail_times": 9},
                "retry": {"max_attempts": 2, "backoff_seconds": 0.1, "max_backoff_seconds": 0.1},
            }
        ]
    )
    detail = run(workflow["id"])
    call = node_of(detail, "call")
    assert (call["status"], call["attempt"], call["error"]["category"]) == ("FAILED", 2, "http_5xx")
    failed = [e for e in logs(client, detail["id"]) if e["event"] == "node.failed"]
    assert failed[0]["details"]["retry"] == "no attempts left (2 of 2)"


def test_a_timeout_is_a_retryable_failure(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define(
        [
            {
                "id": "slow",
                "handler": "sleep",
                "config": {"seconds": 10},
                "timeout_seconds": 1,
                "retry": {"max_attempts": 2, "backoff_seconds": 0.1, "max_backoff_seconds": 0.1},
            }
        ]
    )
    detail = run(workflow["id"])
    slow = node_of(detail, "slow")
    assert (slow["status"], slow["attempt"], slow["error"]["category"]) == ("FAILED", 2, "timeout")
    letters = client.get("/api/v1/admin/dead-letters", query_string={"execution_id": detail["id"]}).json["items"]
    assert [d["category"] for d in letters] == ["timeout"]


def test_a_node_s_timeout_bounds_its_wall_time_across_a_wait_and_a_wake_up_is_not_an_attempt(
    define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    once = {"max_attempts": 1}
    detail = run(
        define(
            [
                {"id": "long", "handler": "delay", "config": {"seconds": 4}, "timeout_seconds": 1, "retry": once},
                {"id": "short", "handler": "delay", "config": {"seconds": 0.3}, "timeout_seconds": 2, "retry": once},
            ]
        )["id"]
    )
    long, short = node_of(detail, "long"), node_of(detail, "short")
    assert (long["status"], long["attempt"], long["error"]["category"]) == ("FAILED", 1, "timeout")
    took = datetime.fromisoformat(long["finished_at"]) - datetime.fromisoformat(long["started_at"])
    assert took.total_seconds() < 3.5  # woken when its timeout was up, not after its 4 s
    assert (short["status"], short["attempt"]) == ("COMPLETED", 1)  # its wake-up went on with attempt 1


def test_the_retry_endpoint_reruns_only_what_failed(
    client: FlaskClient,
    settings: Settings,
    define: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
) -> None:
    workflow = define(
        [
            {"id": "a", "handler": "count"},
            {"id": "side", "handler": "count"},
            {"id": "b", "handler": "flaky", "dependencies": ["a"], "config": {"fail_times": 1}, "max_retries": 0},
            {"id": "c", "handler": "count", "dependencies": ["b", "side"]},
        ]
    )
    detail = run(workflow["id"])
    assert detail["status"] == "FAILED"
    assert {n["node_id"]: n["status"] for n in detail["nodes"]} == {
        "a": "COMPLETED",
        "side": "COMPLETED",
        "b": "FAILED",
        "c": "UPSTREAM_FAILED",
    }
    response = client.post(f"/api/v1/executions/{detail['id']}/retry")
    assert response.status_code == 200 and response.json["status"] in ("RUNNING", "COMPLETED")
    again = finish(detail["id"])
    assert (again["status"], again["attempt"], again["error"]) == ("COMPLETED", 2, None)
    ran = {n: len(runs(settings.redis_url, detail["id"], n)) for n in ("a", "side", "b", "c")}
    assert ran == {"a": 1, "side": 1, "b": 2, "c": 1}
    assert node_of(again, "b")["attempt"] == 2
    results = client.get(f"/api/v1/executions/{detail['id']}/results").json["results"]
    assert results["b"] == {"succeeded_on": 2}
    assert client.post(f"/api/v1/executions/{detail['id']}/retry").json["details"] == {"current_status": "COMPLETED"}


def test_max_retries_retries_the_execution_automatically(
    client: FlaskClient,
    define: Callable[..., dict[str, Any]],
    trigger: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
) -> None:
    workflow = define([{"id": "b", "handler": "flaky", "config": {"fail_times": 1}, "max_retries": 0}])
    execution = trigger(workflow["id"], max_retries=1)
    detail = finish(execution["id"], timeout=30)
    assert (detail["status"], detail["attempt"], detail["max_retries"]) == ("COMPLETED", 2, 1)
    events = [e["event"] for e in logs(client, execution["id"]) if e["event"].startswith("execution.")]
    assert events == [
        "execution.created",
        "execution.running",
        "execution.failed",
        "execution.retrying",
        "execution.running",
        "execution.completed",
    ]
