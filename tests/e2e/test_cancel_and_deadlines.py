"""Cancel is immediate and final; deadlines and scheduled starts are kept by the scheduler."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask.testing import FlaskClient

from app.config import Settings
from tests.e2e.conftest import runs
from tests.support import wait_for


def test_cancel_during_a_long_node_stops_it_and_is_final(
    client: FlaskClient,
    settings: Settings,
    define: Callable[..., dict[str, Any]],
    trigger: Callable[..., dict[str, Any]],
    wait_node: Callable[..., dict[str, Any]],
) -> None:
    workflow = define(
        [
            {"id": "long", "handler": "sleep", "config": {"seconds": 30}},
            {"id": "after", "handler": "count", "dependencies": ["long"]},
        ]
    )
    execution = trigger(workflow["id"], idempotency_key=f"cancel-{workflow['id']}")
    wait_node(execution["id"], "long", "RUNNING")
    wait_for(lambda: runs(settings.redis_url, execution["id"], "long"), timeout=10, interval=0.01)  # inside the handler
    cancelled_at = time.time()
    response = client.post(f"/api/v1/executions/{execution['id']}/cancel")
    assert response.status_code == 200
    assert response.json["status"] == "CANCELLED"
    assert {n["node_id"]: n["status"] for n in response.json["nodes"]} == {"long": "CANCELLED", "after": "CANCELLED"}

    def handler_ended() -> float | None:
        ends = [at for what, _, at in runs(settings.redis_url, execution["id"], "long") if what == "end"]
        return ends[0] if ends else None

    ended_at = wait_for(handler_ended, timeout=10)
    assert ended_at - cancelled_at < 5  # RQ's stop-job reached the handler; it did not sleep 30 s
    # final: nothing changes it, and the requests say why
    for path in ("cancel", "retry"):
        refused = client.post(f"/api/v1/executions/{execution['id']}/{path}")
        assert refused.status_code == 409 and refused.json["details"]["current_status"] == "CANCELLED"
    replay = client.post(
        "/api/v1/executions",
        json={"workflow_id": workflow["id"], "idempotency_key": f"cancel-{workflow['id']}"},
    )
    assert replay.status_code == 409 and replay.json["details"]["current_status"] == "CANCELLED"
    time.sleep(0.5)
    assert client.get(f"/api/v1/executions/{execution['id']}").json["status"] == "CANCELLED"
    assert runs(settings.redis_url, execution["id"], "after") == []


def test_cancelling_a_finished_execution_is_409_with_its_state(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    detail = run(define([{"id": "a", "handler": "noop"}])["id"])
    response = client.post(f"/api/v1/executions/{detail['id']}/cancel")
    assert response.status_code == 409
    assert response.json["details"] == {"current_status": "COMPLETED"}
    assert client.post("/api/v1/executions/00000000-0000-0000-0000-000000000000/cancel").status_code == 404


def test_a_workflow_deadline_fails_the_execution_and_stops_its_nodes(
    client: FlaskClient,
    settings: Settings,
    define: Callable[..., dict[str, Any]],
    trigger: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
) -> None:
    workflow = define(
        [
            {"id": "quick", "handler": "noop"},
            {"id": "long", "handler": "sleep", "config": {"seconds": 30}},
            {"id": "after", "handler": "noop", "dependencies": ["long"]},
        ],
        timeout_seconds=2,
    )
    started = time.time()
    execution = trigger(workflow["id"])
    detail = finish(execution["id"], timeout=15)
    assert time.time() - started < 10
    assert detail["status"] == "FAILED" and detail["error"]["reason"] == "timeout"
    assert {n["node_id"]: n["status"] for n in detail["nodes"]} == {
        "quick": "COMPLETED",
        "long": "CANCELLED",
        "after": "CANCELLED",
    }
    assert detail["deadline_at"] is not None


def test_scheduled_at_in_the_future_waits_and_in_the_past_starts_at_once(
    client: FlaskClient,
    define: Callable[..., dict[str, Any]],
    trigger: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    at = datetime.now(UTC) + timedelta(seconds=2)
    later = trigger(workflow["id"], scheduled_at=at.isoformat())
    assert later["status"] == "PENDING" and later["started_at"] is None
    time.sleep(0.5)
    assert client.get(f"/api/v1/executions/{later['id']}").json["status"] == "PENDING"
    detail = finish(later["id"], timeout=15)
    assert detail["status"] == "COMPLETED"
    assert datetime.fromisoformat(detail["started_at"]) >= at
    past = trigger(workflow["id"], scheduled_at=(datetime.now(UTC) - timedelta(hours=1)).isoformat())
    assert past["status"] == "RUNNING"
    naive = client.post(
        "/api/v1/executions", json={"workflow_id": workflow["id"], "scheduled_at": "2030-01-01T00:00:00"}
    )
    assert naive.status_code == 422 and naive.json["errors"][0]["field"] == "scheduled_at"


def test_a_scheduled_execution_can_be_cancelled_before_it_starts(
    client: FlaskClient, define: Callable[..., dict[str, Any]], trigger: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "a", "handler": "count"}])
    execution = trigger(workflow["id"], scheduled_at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    assert client.post(f"/api/v1/executions/{execution['id']}/cancel").json["status"] == "CANCELLED"
    time.sleep(2)
    detail = client.get(f"/api/v1/executions/{execution['id']}").json
    assert (detail["status"], detail["nodes"][0]["status"]) == ("CANCELLED", "CANCELLED")
