"""Defining workflows over HTTP: validation, versions, drafts, the error shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from app import create_app
from app.config import Settings
from tests.e2e.conftest import unique


def problems(response: Any) -> set[tuple[str | None, str, str]]:
    assert response.status_code == 422, response.json
    body = response.json
    assert set(body) >= {"type", "title", "status", "detail", "instance", "errors"} and body["status"] == 422
    return {(p.get("node_id"), p["field"], p["code"]) for p in body["errors"]}


def test_every_dag_problem_is_listed_in_one_422(client: FlaskClient) -> None:
    name = unique()
    response = client.post(
        "/api/v1/workflows",
        json={
            "name": name,
            "nodes": [
                {"id": "a", "handler": "noop"},
                {"id": "a", "handler": "noop"},
                {"id": "self", "handler": "noop", "dependencies": ["self"]},
                {"id": "orphan", "handler": "noop", "dependencies": ["ghost"]},
                {"id": "x", "handler": "teleport"},
                {"id": "c1", "handler": "noop", "dependencies": ["c2"]},
                {"id": "c2", "handler": "noop", "dependencies": ["c1"]},
                {"id": "big", "handler": "noop", "config": {"blob": "x" * 10_300}},
                {"id": "calc", "handler": "compute", "config": {"operation": "sqrt", "a": 1, "b": 2}},
                {"id": "slow", "handler": "noop", "timeout_seconds": 7200},
            ],
        },
    )
    assert problems(response) == {
        ("a", "id", "duplicate_node_id"),
        ("self", "dependencies", "self_dependency"),
        ("orphan", "dependencies", "unknown_dependency"),
        ("x", "handler", "unknown_handler"),
        ("c1", "dependencies", "cycle"),
        ("big", "config", "config_too_large"),
        ("calc", "config.operation", "invalid_config"),
        ("slow", "timeout_seconds", "invalid_timeout"),
    }
    cycle = next(p for p in response.json["errors"] if p["code"] == "cycle")
    assert sorted(cycle["details"]["cycle"]) == ["c1", "c2"]
    # nothing was stored
    assert client.get("/api/v1/workflows", query_string={"name": name}).json["items"] == []


def test_an_empty_dag_cannot_be_activated(client: FlaskClient) -> None:
    assert problems(client.post("/api/v1/workflows", json={"name": unique(), "activate": True})) == {
        (None, "nodes", "empty_dag")
    }
    draft = client.post("/api/v1/workflows", json={"name": unique()}).json
    assert draft["status"] == "draft"
    assert problems(client.post(f"/api/v1/workflows/{draft['id']}/activate")) == {(None, "nodes", "empty_dag")}


def test_the_node_limit_is_enforced(settings: Settings, authorized: Any) -> None:
    small = authorized(create_app(Settings(**{**settings.__dict__, "max_nodes": 3})))
    nodes = [{"id": f"n{i}", "handler": "noop"} for i in range(4)]
    assert problems(small.post("/api/v1/workflows", json={"name": unique(), "nodes": nodes})) == {
        (None, "nodes", "too_many_nodes")
    }


def test_body_validation_errors_use_the_same_shape(client: FlaskClient) -> None:
    response = client.post("/api/v1/workflows", json={"description": 5, "nodes": [{"handler": "noop"}], "extra": 1})
    fields = {p["field"] for p in response.json["errors"]}
    assert response.status_code == 422
    assert {"name", "description", "nodes.0.id", "extra"} <= fields


def test_peer_d_linear_steps_build_a_chain_by_step_order(client: FlaskClient) -> None:
    workflow = client.post("/api/v1/workflows", json={"name": unique(), "metadata": {"owner": "orders"}}).json
    url = f"/api/v1/workflows/{workflow['id']}/steps"
    for name, order in [("validate", 0), ("charge", 1), ("notify-a", 2), ("notify-b", 2), ("close", 3)]:
        response = client.post(url, json={"name": name, "task_type": "noop", "step_order": order, "config": {}})
        assert response.status_code == 201, response.json
    active = client.post(f"/api/v1/workflows/{workflow['id']}/activate").json
    deps = {n["id"]: sorted(n["dependencies"]) for n in active["nodes"]}
    assert deps == {
        "validate": [],
        "charge": ["validate"],
        "notify-a": ["charge"],
        "notify-b": ["charge"],
        "close": ["notify-a", "notify-b"],
    }
    assert active["status"] == "active" and active["metadata"] == {"owner": "orders"}


def test_step_orders_multiplying_into_millions_of_edges_are_refused_at_once(client: FlaskClient) -> None:
    nodes = [{"id": f"a{i}", "handler": "noop", "step_order": 0} for i in range(2500)]
    nodes += [{"id": f"b{i}", "handler": "noop", "step_order": 1} for i in range(2500)]
    response = client.post("/api/v1/workflows", json={"name": unique(), "nodes": nodes})
    assert problems(response) == {(None, "nodes", "too_many_dependencies")}


def test_a_step_is_validated_when_it_is_added(client: FlaskClient) -> None:
    workflow = client.post("/api/v1/workflows", json={"name": unique()}).json
    url = f"/api/v1/workflows/{workflow['id']}/steps"
    assert client.post(url, json={"id": "a", "handler": "noop"}).status_code == 201
    assert problems(client.post(url, json={"id": "a", "handler": "noop"})) == {("a", "id", "duplicate_node_id")}
    assert problems(client.post(url, json={"id": "b", "handler": "noop", "dependencies": ["zz"]})) == {
        ("b", "dependencies", "unknown_dependency")
    }


def test_an_active_workflow_is_immutable_and_the_name_gets_a_new_version(
    client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    name = unique()
    v1 = define([{"id": "a", "handler": "noop"}], name=name)
    response = client.post(f"/api/v1/workflows/{v1['id']}/steps", json={"id": "b", "handler": "noop"})
    assert response.status_code == 409
    assert response.json["details"]["current_status"] == "active"
    v2 = define([{"id": "a", "handler": "noop"}, {"id": "b", "handler": "noop"}], name=name)
    assert (v1["version"], v2["version"]) == (1, 2)
    # by name, an execution runs the latest active version
    execution = client.post("/api/v1/executions", json={"workflow_name": name}).json
    assert (execution["workflow_id"], execution["workflow_version"]) == (v2["id"], 2)


def test_archived_workflows_take_no_new_executions(client: FlaskClient, define: Callable[..., dict[str, Any]]) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    archived = client.post(f"/api/v1/workflows/{workflow['id']}/archive")
    assert archived.status_code == 200 and archived.json["status"] == "archived"
    assert client.post(f"/api/v1/workflows/{workflow['id']}/archive").status_code == 200  # idempotent
    response = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]})
    assert response.status_code == 409
    assert response.json["details"] == {"current_status": "archived"}
    assert client.post(f"/api/v1/workflows/{workflow['id']}/activate").status_code == 409
    draft = client.post("/api/v1/workflows", json={"name": unique(), "nodes": [{"id": "a", "handler": "noop"}]}).json
    assert client.post("/api/v1/executions", json={"workflow_id": draft["id"]}).status_code == 409


def test_lists_filter_and_page_by_cursor_with_a_total_on_request(
    client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    name = unique()
    for _ in range(3):
        define([{"id": "a", "handler": "noop"}], name=name)
    client.post("/api/v1/workflows", json={"name": name})  # a draft v4
    active = {"name": name, "status": "active"}
    page = client.get("/api/v1/workflows", query_string={**active, "limit": 2, "count": "true"}).json
    assert (page["total"], len(page["items"])) == (3, 2) and page["next_cursor"]
    define([{"id": "a", "handler": "noop"}], name=name)  # a new one meanwhile: it does not shift the pages
    rest = client.get("/api/v1/workflows", query_string={**active, "limit": 2, "cursor": page["next_cursor"]}).json
    assert rest["next_cursor"] is None and "total" not in rest
    assert [w["version"] for w in page["items"] + rest["items"]] == [3, 2, 1]
    both = client.get("/api/v1/workflows", query_string=[("name", name), ("status", "active"), ("status", "draft")])
    assert sorted(w["version"] for w in both.json["items"]) == [1, 2, 3, 4, 5]
    bad = client.get("/api/v1/workflows", query_string={"limit": 0, "status": "sleepy", "cursor": "nope"})
    assert bad.status_code == 422
    assert {p["field"] for p in bad.json["errors"]} == {"query.limit", "query.status.0", "query.cursor"}


@pytest.mark.parametrize(
    "method,path,status",
    [
        ("get", "/api/v1/workflows/00000000-0000-0000-0000-000000000000", 404),
        ("get", "/api/v1/executions/00000000-0000-0000-0000-000000000000", 404),
        ("get", "/api/v1/executions/00000000-0000-0000-0000-000000000000/results", 404),
        ("get", "/api/v1/workflows/not-a-uuid", 404),
        ("get", "/nowhere", 404),
        ("delete", "/api/v1/workflows", 405),
    ],
)
def test_errors_are_json_in_one_shape(client: FlaskClient, method: str, path: str, status: int) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.is_json
    assert response.json["status"] == status and response.json["detail"] and response.json["title"]
    assert response.content_type == "application/problem+json" and response.json["instance"] == path.split("?")[0]


def test_malformed_json_is_a_400_in_the_same_shape(client: FlaskClient) -> None:
    response = client.post("/api/v1/workflows", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json["status"] == 400


def test_openapi_document_and_docs_are_served(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    assert spec["info"]["title"] == "Stepwise"
    assert "/api/v1/executions/{execution_id}/results" in spec["paths"]
    assert "422" in spec["paths"]["/api/v1/workflows"]["post"]["responses"]
    assert client.get("/docs").status_code == 200


def test_health_is_cheap_and_ready_checks_everything(client: FlaskClient) -> None:
    assert client.get("/health").json == {"status": "ok", "health": "healthy"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json == {"status": "ready", "database": "ok", "migrations": "ok", "redis": "ok"}


def test_an_unclosed_template_is_refused_at_definition_by_both_apis(client: FlaskClient) -> None:
    nodes = [
        {"id": "a", "handler": "noop"},
        {"id": "b", "handler": "noop", "dependencies": ["a"], "config": {"body": "{{ a.result"}},
        {"id": "c", "handler": "noop", "dependencies": ["a"], "config": {"x": "${a.output.x"}},
        {"id": "d", "handler": "noop", "dependencies": ["a"], "config": {"x": "{{ a.ok }} a.id }}"}},
        {"id": "json", "handler": "noop", "dependencies": ["a"], "config": {"x": '{"a": {"b": "{{ a.ok }}"}}'}},
    ]
    expected = {("b", "config.body", "invalid_template"), ("c", "config.x", "invalid_template")}
    expected.add(("d", "config.x", "invalid_template"))
    assert problems(client.post("/api/v1/workflows", json={"name": unique(), "nodes": nodes})) == expected
    peer = client.post("/workflow", json={"name": unique(), "nodes": nodes})
    assert peer.status_code == 400
    assert {(p["node_id"], p["field"], p["code"]) for p in peer.json["errors"]} == expected
    unclosed = next(p for p in peer.json["errors"] if p["node_id"] == "b")
    assert "not closed" in unclosed["message"]


def test_a_name_is_trimmed_by_both_apis_and_by_a_trigger(client: FlaskClient) -> None:
    name = unique()
    nodes = [{"id": "a", "handler": "noop"}]
    created = client.post("/api/v1/workflows", json={"name": f"  {name}\t", "nodes": nodes, "activate": True})
    assert created.status_code == 201 and created.json["name"] == name
    by_name = client.post("/api/v1/executions", json={"workflow_name": f" {name} "})
    assert by_name.status_code == 201 and by_name.json["workflow_id"] == created.json["id"]
    assert client.post(f"/api/v1/executions/{by_name.json['id']}/cancel").status_code == 200
    submitted = client.post("/workflow", json={"name": f" {name}-adhoc ", "nodes": nodes})
    assert submitted.status_code == 200, submitted.json
    assert client.get(f"/api/v1/workflows/{submitted.json['workflow_id']}").json["name"] == f"{name}-adhoc"


def test_a_new_workflow_has_a_location_and_a_strong_etag(client: FlaskClient) -> None:
    made = client.post("/api/v1/workflows", json={"name": unique(), "nodes": [{"id": "a", "handler": "noop"}],
                                                  "activate": True})  # fmt: skip
    assert made.status_code == 201 and made.headers["Location"] == f"/api/v1/workflows/{made.json['id']}"
    first = client.get(made.headers["Location"])
    etag = first.headers["ETag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert client.get(made.headers["Location"], headers={"If-None-Match": etag}).status_code == 304
    key = client.post("/api/v1/admin/keys", json={"name": unique("loc"), "role": "reader"})
    assert key.status_code == 201 and key.headers["Location"] == f"/api/v1/admin/keys/{key.json['id']}"
    assert client.delete(key.headers["Location"]).status_code == 200
