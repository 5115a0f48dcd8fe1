"""Idempotency-Key: same key and body 200, different body 422, racing twins make one execution."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.e2e.conftest import unique


def test_same_key_same_body_returns_the_original(client: FlaskClient, define: Callable[..., dict[str, Any]]) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    body = {"workflow_id": workflow["id"], "input_data": {"order_id": 1, "items": [1, 2]}}
    first = client.post("/api/v1/executions", json=body, headers={"Idempotency-Key": "order-1"})
    again = client.post(
        "/api/v1/executions",
        json={"input_data": {"items": [1, 2], "order_id": 1}, "workflow_id": workflow["id"]},  # other key order
        headers={"Idempotency-Key": "order-1"},
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]
    assert first.json["idempotency_key"] == "order-1"


def test_same_key_different_body_is_422_naming_the_original(
    client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    first = client.post(
        "/api/v1/executions", json={"workflow_id": workflow["id"], "input_data": {"n": 1}, "idempotency_key": "k"}
    )
    other = client.post(
        "/api/v1/executions", json={"workflow_id": workflow["id"], "input_data": {"n": 2}, "idempotency_key": "k"}
    )
    assert other.status_code == 422
    assert other.json["details"]["execution_id"] == first.json["id"]


def test_key_in_header_and_field_are_the_same_key(client: FlaskClient, define: Callable[..., dict[str, Any]]) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    first = client.post("/api/v1/executions", json={"workflow_id": workflow["id"], "idempotency_key": "same"})
    again = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}, headers={"Idempotency-Key": "same"})
    assert (first.status_code, again.status_code) == (201, 200)
    clash = client.post(
        "/api/v1/executions",
        json={"workflow_id": workflow["id"], "idempotency_key": "one"},
        headers={"Idempotency-Key": "two"},
    )
    assert clash.status_code == 422


def test_without_a_key_every_trigger_is_a_new_execution(
    client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    ids = {client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json["id"] for _ in range(3)}
    assert len(ids) == 3


def test_fifty_concurrent_identical_triggers_create_exactly_one_execution(
    authorized: Any, app: Flask, client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "a", "handler": "noop"}, {"id": "b", "handler": "noop", "dependencies": ["a"]}])
    body = {"workflow_id": workflow["id"], "input_data": {"order": 42}}
    barrier = threading.Barrier(50)

    def trigger(_: int) -> tuple[int, str]:
        own_client = authorized(app)
        barrier.wait()
        response = own_client.post("/api/v1/executions", json=body, headers={"Idempotency-Key": "order-42"})
        return response.status_code, response.json["id"]

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(trigger, range(50)))
    codes = sorted(code for code, _ in results)
    assert codes == [200] * 49 + [201]
    assert len({execution_id for _, execution_id in results}) == 1
    listed = client.get("/api/v1/executions", query_string={"workflow_id": workflow["id"]}).json
    assert len(listed["items"]) == 1
    # and it has exactly one set of node rows
    detail = client.get(f"/api/v1/executions/{results[0][1]}").json
    assert [n["node_id"] for n in detail["nodes"]] == ["a", "b"]


def test_by_name_a_key_covers_every_version(client: FlaskClient, define: Callable[..., dict[str, Any]]) -> None:
    name = unique("orders")
    define([{"id": "a", "handler": "noop"}], name=name)
    body = {"workflow_name": name, "input_data": {"order": 7}}
    first = client.post("/api/v1/executions", json=body, headers={"Idempotency-Key": "order-7"})
    define([{"id": "a", "handler": "noop"}, {"id": "b", "handler": "noop"}], name=name)  # v2 goes live
    again = client.post("/api/v1/executions", json=body, headers={"Idempotency-Key": "order-7"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"] and again.json["workflow_version"] == 1
    fresh = client.post("/api/v1/executions", json=body, headers={"Idempotency-Key": "order-8"})
    assert fresh.status_code == 201 and fresh.json["workflow_version"] == 2


def test_a_replay_still_answers_after_the_workflow_is_archived(
    client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    body = {"workflow_id": workflow["id"], "idempotency_key": "k-archived"}
    first = client.post("/api/v1/executions", json=body)
    client.post(f"/api/v1/workflows/{workflow['id']}/archive")
    again = client.post("/api/v1/executions", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json["id"] == first.json["id"]
    assert client.post("/api/v1/executions", json={**body, "idempotency_key": "k-new"}).status_code == 409


def test_racing_by_name_triggers_while_a_new_version_goes_live_make_one_execution(
    authorized: Any, app: Flask, client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    name = unique("race")
    define([{"id": "a", "handler": "noop"}], name=name)
    barrier = threading.Barrier(21)

    def trigger(i: int) -> str:
        own = authorized(app)
        barrier.wait()
        if i == 0:
            own.post(
                "/api/v1/workflows", json={"name": name, "activate": True, "nodes": [{"id": "a", "handler": "noop"}]}
            )
            return ""
        response = own.post("/api/v1/executions", json={"workflow_name": name}, headers={"Idempotency-Key": "once"})
        assert response.status_code in (200, 201), response.json
        return response.json["id"]

    with ThreadPoolExecutor(max_workers=21) as pool:
        ids = {i for i in pool.map(trigger, range(21)) if i}
    assert len(ids) == 1


def test_a_new_execution_has_a_location_and_a_replay_a_content_location(
    client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    body = {"workflow_id": workflow["id"]}
    made = client.post("/api/v1/executions", json=body, headers={"Idempotency-Key": '"order-7"'})  # RFC 8941 quoted
    assert made.status_code == 201 and made.headers["Location"] == f"/api/v1/executions/{made.json['id']}"
    assert made.json["idempotency_key"] == "order-7"
    again = client.post("/api/v1/executions", json=body, headers={"Idempotency-Key": "order-7"})  # the same key bare
    assert again.status_code == 200 and again.json["id"] == made.json["id"]
    assert again.headers["Content-Location"] == made.headers["Location"] and "Location" not in again.headers
    unclosed = client.post("/api/v1/executions", json=body, headers={"Idempotency-Key": '"order-7'})
    assert unclosed.status_code == 422 and "closing quote" in str(unclosed.json["errors"])


def test_executions_are_found_by_key_correlation_state_and_time(
    client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    made = client.post(
        "/api/v1/executions",
        json={"workflow_id": workflow["id"], "scheduled_at": "2099-01-01T00:00:00Z"},
        headers={"Idempotency-Key": "find-me", "X-Correlation-ID": f"corr-{workflow['id']}"},
    ).json
    for query in (
        {"workflow_id": workflow["id"], "idempotency_key": "find-me"},
        {"correlation_id": f"corr-{workflow['id']}"},
        {"workflow_name": workflow["name"], "status": ["PENDING", "RUNNING"]},
        {"workflow_id": workflow["id"], "created_after": made["created_at"]},
    ):
        found = client.get("/api/v1/executions", query_string=query).json["items"]
        assert [e["id"] for e in found] == [made["id"]], query
    for query in (
        {"workflow_id": workflow["id"], "status": "COMPLETED"},
        {"workflow_id": workflow["id"], "created_before": made["created_at"]},
        {"workflow_id": workflow["id"], "idempotency_key": "other"},
    ):
        assert client.get("/api/v1/executions", query_string=query).json["items"] == [], query
    assert client.post(f"/api/v1/executions/{made['id']}/cancel").status_code == 200
