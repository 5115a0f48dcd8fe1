"""Data flows between nodes through templates, checked when defined and resolved when run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient

from tests.e2e.conftest import unique


def test_values_flow_with_their_json_types(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define(
        [
            {
                "id": "price",
                "handler": "compute",
                "config": {"operation": "multiply", "a": "{{ input.qty }}", "b": 2.5},
            },
            {"id": "fetch-user", "handler": "noop", "config": {"body": {"user": {"id": 42, "tags": ["a", "b"]}}}},
            {
                "id": "report",
                "handler": "noop",
                "dependencies": ["price", "fetch-user"],
                "config": {
                    "total": "{{ price.result }}",
                    "user": "${fetch-user.output.body.user}",
                    "first_tag": "{{ fetch-user.body.user.tags.0 }}",
                    "line": "order {{ input.order_id }}: {{ price.result }} for user {{ fetch-user.body.user.id }}",
                    "shout": "{{ input.order_id | upper }}",
                    "nested": {"list": ["{{ input.qty }}", "x-{{ input.qty }}"]},
                },
            },
        ]
    )
    detail = run(workflow["id"], {"order_id": "a-17", "qty": 4})
    assert detail["status"] == "COMPLETED", detail
    report = client.get(f"/api/v1/executions/{detail['id']}/results").json["results"]["report"]
    assert report == {
        "total": 10,
        "user": {"id": 42, "tags": ["a", "b"]},
        "first_tag": "a",
        "line": "order a-17: 10 for user 42",
        "shout": "A-17",
        "nested": {"list": [4, "x-4"]},
    }


def test_a_missing_path_fails_the_node_for_good_naming_the_path(
    define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define(
        [
            {"id": "fetch", "handler": "noop", "config": {"body": {"user": {}}}},
            {"id": "use", "handler": "noop", "dependencies": ["fetch"], "config": {"id": "{{ fetch.body.user.id }}"}},
        ]
    )
    detail = run(workflow["id"])
    use = next(n for n in detail["nodes"] if n["node_id"] == "use")
    assert (detail["status"], use["status"], use["attempt"]) == ("FAILED", "FAILED", 1)
    assert "fetch.body.user.id" in use["error"]["message"] and use["error"]["category"] == "validation"


def test_a_templated_value_is_validated_by_its_handler_once_resolved(
    define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define(
        [
            {"id": "src", "handler": "noop", "config": {"n": "not a number"}},
            {
                "id": "calc",
                "handler": "compute",
                "dependencies": ["src"],
                "config": {"operation": "add", "a": "{{ src.n }}", "b": 1},
            },
        ]
    )
    detail = run(workflow["id"])
    calc = next(n for n in detail["nodes"] if n["node_id"] == "calc")
    assert calc["status"] == "FAILED" and "a: Not a valid number" in calc["error"]["message"]


def test_templates_are_checked_when_the_workflow_is_defined(client: FlaskClient) -> None:
    response = client.post(
        "/api/v1/workflows",
        json={
            "name": unique(),
            "nodes": [
                {"id": "a", "handler": "noop"},
                {"id": "b", "handler": "noop", "config": {"x": "{{ a.value }}"}},  # a is not an ancestor
                {"id": "c", "handler": "noop", "dependencies": ["a"], "config": {"x": "{{ a.v " + "x" * 500 + " }}"}},
                {"id": "d", "handler": "noop", "dependencies": ["a"], "config": {"x": "{{ a.v | }}"}},
                {"id": "e", "handler": "noop", "dependencies": ["a"], "config": {"x": "{{ a.ok }} {{ input.z }}"}},
            ],
        },
    )
    assert response.status_code == 422
    found = {(p["node_id"], p["field"], p["code"]) for p in response.json["errors"]}
    assert found == {
        ("b", "config.x", "template_not_an_ancestor"),
        ("c", "config.x", "template_too_long"),
        ("d", "config.x", "invalid_template"),
    }


def test_the_sandbox_refuses_python_internals(
    define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    by_path = define([{"id": "a", "handler": "noop", "config": {"x": "{{ input.__class__ }}"}}])
    node = run(by_path["id"], {"k": 1})["nodes"][0]  # a dotted path reads keys, never attributes
    assert node["status"] == "FAILED" and "no value at input.__class__" in node["error"]["message"]
    by_jinja = define([{"id": "a", "handler": "noop", "config": {"x": "{{ (input.k).__class__.__mro__ }}"}}])
    node = run(by_jinja["id"], {"k": 1})["nodes"][0]  # JSON values have no attributes at all
    assert node["status"] == "FAILED" and "no value at" in node["error"]["message"]
    assert "<class" not in node["error"]["message"]
