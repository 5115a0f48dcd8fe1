"""A trigger's `node_params`: config overrides for one execution, checked as a definition
is, and part of the idempotent body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

NODES = [
    {"id": "greet", "handler": "log", "config": {"message": "hello {who}", "level": "info"}},
    {"id": "echo", "handler": "transform", "dependencies": ["greet"],
     "config": {"input": "{{ input.text }}", "transform_type": "uppercase"}},
]  # fmt: skip


def test_overrides_change_those_nodes_for_that_execution_only(
    client: FlaskClient,
    define: Callable[..., dict[str, Any]],
    workers: Any,
    finish: Callable[..., dict[str, Any]],
) -> None:
    workflow = define(NODES)
    body = {"workflow_id": workflow["id"], "input_data": {"text": "abc", "who": "ada"},
            "node_params": {"echo": {"transform_type": "lowercase", "input": "{{ input.text }}-XYZ"}}}  # fmt: skip
    overridden = client.post("/api/v1/executions", json=body, headers={"Idempotency-Key": "np-1"})
    assert overridden.status_code == 201, overridden.json
    plain = client.post("/api/v1/executions", json={"workflow_id": workflow["id"], "input_data": {"text": "abc"}})
    results = {
        response.json["id"]: client.get(f"/api/v1/executions/{finish(response.json['id'])['id']}/results").json
        for response in (overridden, plain)
    }
    assert results[overridden.json["id"]]["results"]["echo"]["result"] == "abc-xyz"
    assert results[plain.json["id"]]["results"]["echo"]["result"] == "ABC"  # the definition is unchanged
    replay = client.post("/api/v1/executions", json=body, headers={"Idempotency-Key": "np-1"})
    assert replay.status_code == 200 and replay.json["id"] == overridden.json["id"]
    changed = {**body, "node_params": {"echo": {"transform_type": "titlecase"}}}
    assert client.post("/api/v1/executions", json=changed, headers={"Idempotency-Key": "np-1"}).status_code == 422


def test_overrides_are_checked_as_a_definition_is(client: FlaskClient, define: Callable[..., dict[str, Any]]) -> None:
    workflow = define(NODES)
    for node_params, field in (
        ({"ghost": {"x": 1}}, "node_params.ghost"),
        ({"echo": {"transform_type": "sideways"}}, "node_params.echo.transform_type"),
        ({"greet": {"message": "{{ echo.result }}"}}, "node_params.greet.message"),  # not an ancestor
        ({"greet": {"message": "x" * 20_000}}, "node_params.greet"),
    ):
        response = client.post("/api/v1/executions", json={"workflow_id": workflow["id"], "node_params": node_params})
        assert response.status_code == 422, (node_params, response.json)
        assert field in {problem["field"] for problem in response.json["errors"]}, response.json
    not_an_object = client.post("/api/v1/executions", json={"workflow_id": workflow["id"], "node_params": {"a": 1}})
    assert not_an_object.status_code == 422
