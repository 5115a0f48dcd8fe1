"""Input PostgreSQL cannot store, or that is too big, is a clear 4xx, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.e2e.conftest import unique

NODE = '{"id": "a", "handler": "noop"}'

# Raw bodies: the test client's json= would refuse or escape some of these.
BAD_WORKFLOW_BODIES = {
    "nul in name": '{"name": "a\\u0000b"}',
    "lone surrogate in name": '{"name": "a\\ud800"}',
    "nul in config": '{"name": "x", "nodes": [{"id": "a", "handler": "noop", "config": {"k": "\\u0000"}}]}',
    "nul in a key": '{"name": "x", "metadata": {"\\u0000": 1}}',
    "NaN": '{"name": "x", "metadata": {"n": NaN}}',
    "Infinity": '{"name": "x", "nodes": [{"id": "a", "handler": "noop", "config": {"n": -Infinity}}]}',
    "1e400": '{"name": "x", "metadata": {"n": 1e400}}',
    "5000-digit integer": '{"name": "x", "metadata": {"n": ' + "9" * 5000 + "}}",
    "nested 5000 deep": '{"name": "x", "metadata": ' + '{"a": ' * 5000 + "1" + "}" * 5001,
    "nested 100 deep": '{"name": "x", "metadata": ' + "[" * 100 + "]" * 100 + "}",
    "not UTF-8": b'{"name": "\xff\xfe"}',
    "truncated": '{"name": "x", "nodes": [',
    "huge step_order": '{"name": "x", "nodes": [{"id": "a", "handler": "noop", "step_order": 99999999999}]}',
    "huge timeout": '{"name": "x", "nodes": [{"id": "a", "handler": "noop", "timeout_seconds": 99999999999}]}',
    "config not an object": '{"name": "x", "nodes": [{"id": "a", "handler": "noop", "config": [1]}]}',
    "nodes not a list": '{"name": "x", "nodes": {"a": 1}}',
    "body not an object": "[1, 2]",
    "null body": "null",
    "node null": '{"name": "x", "nodes": [null]}',
    "dependency not a string": '{"name": "x", "nodes": [{"id": "a", "handler": "noop", "dependencies": [1]}]}',
}


def assert_clean_4xx(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.is_json
    body = response.json
    assert response.content_type == "application/problem+json"
    assert body["status"] == response.status_code and body["detail"] and body["type"].startswith("/problems/")


@pytest.mark.parametrize("body", BAD_WORKFLOW_BODIES.values(), ids=BAD_WORKFLOW_BODIES.keys())
def test_bad_workflow_bodies(client: FlaskClient, body: str | bytes) -> None:
    assert_clean_4xx(client.post("/api/v1/workflows", data=body, content_type="application/json"))


def test_malformed_json_says_where(client: FlaskClient) -> None:
    response = client.post("/api/v1/workflows", data='{"name": "x",\n "nodes": [}', content_type="application/json")
    assert response.status_code == 400
    assert "line 2 column" in response.json["detail"]


@pytest.mark.parametrize(
    "body",
    [
        '{"workflow_name": "x", "input_data": {"v": NaN}}',
        '{"workflow_name": "a\\u0000"}',
        '{"workflow_name": "x", "idempotency_key": "k\\u0000"}',
        '{"workflow_name": "x", "idempotency_key": "clé"}',
        '{"workflow_name": "x", "input_data": {"v": "\\udfff"}}',
        '{"workflow_id": "not-a-uuid"}',
        '{"workflow_name": "x", "workflow_id": "00000000-0000-0000-0000-000000000000"}',
        "{}",
    ],
)
def test_bad_trigger_bodies(client: FlaskClient, body: str) -> None:
    assert_clean_4xx(client.post("/api/v1/executions", data=body, content_type="application/json"))


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/workflows?name=%00",
        "/api/v1/workflows?cursor=%FF%FE",
        "/api/v1/workflows?limit=abc",
        "/api/v1/executions?status=%00",
        "/api/v1/executions?workflow_id=zzz",
    ],
)
def test_bad_query_strings(client: FlaskClient, path: str) -> None:
    assert_clean_4xx(client.get(path))


def test_bad_step_bodies(client: FlaskClient) -> None:
    draft = client.post("/api/v1/workflows", json={"name": unique()}).json
    url = f"/api/v1/workflows/{draft['id']}/steps"
    for body in ['{"id": "a\\u0000", "handler": "noop"}', '{"id": "a", "handler": "noop", "config": {"x": NaN}}', "[]"]:
        assert_clean_4xx(client.post(url, data=body, content_type="application/json"))


def test_non_ascii_idempotency_key_header_is_refused(
    client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "a", "handler": "noop"}])
    latin1_key = "clé".encode().decode("latin-1")  # how a UTF-8 header value arrives
    headers = {"Idempotency-Key": latin1_key}
    response = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}, headers=headers)
    assert response.status_code == 422


def test_unicode_that_postgres_can_store_is_kept_exactly(
    client: FlaskClient, define: Callable[..., dict[str, Any]]
) -> None:
    text = "Zoë 🚀 \u200b ünïcödé"
    workflow = define([{"id": "a", "handler": "noop", "config": {"t": text}}], metadata={"t": text})
    assert client.get(f"/api/v1/workflows/{workflow['id']}").json["metadata"] == {"t": text}


@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (b'{"name": "\xff\xfe"}', "application/json", "not UTF-8"),
        ('{"name": "x"}'.encode("utf-16"), "application/json", "not UTF-8"),
        ('{"name": "café"}'.encode("latin-1"), "application/json; charset=latin-1", "charset=latin-1"),
    ],
    ids=["invalid UTF-8", "UTF-16", "declared latin-1"],
)
def test_a_body_that_is_not_utf8_is_a_400_that_says_so(
    client: FlaskClient, body: bytes, content_type: str, said: str
) -> None:
    response = client.post("/api/v1/workflows", data=body, content_type=content_type)
    assert response.status_code == 400 and said in response.json["detail"]


def test_a_nul_in_the_path_is_a_400(client: FlaskClient) -> None:
    for path in ("/api/v1/admin/keys/%00", "/api/v1/admin/keys/a%00b"):
        response = client.delete(path)
        assert response.status_code == 400 and "NUL" in response.json["detail"]


@pytest.mark.parametrize("method", ["TRACE", "PUT", "PATCH"])
def test_a_405_says_which_methods_are_allowed(client: FlaskClient, method: str) -> None:
    response = client.open("/api/v1/workflows", method=method)
    assert response.status_code == 405 and response.json["status"] == 405
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_any_rfc3339_offset_names_an_instant(client: FlaskClient, define: Callable[..., dict[str, Any]]) -> None:
    # PostgreSQL takes at most +-15:59 in a literal; RFC 3339 allows up to +-23:59.
    workflow = define([{"id": "a", "handler": "noop"}])
    body = {"workflow_id": workflow["id"], "scheduled_at": "2030-01-01T00:00:00+20:00"}
    created = client.post("/api/v1/executions", json=body)
    assert created.status_code == 201, created.json
    assert created.json["scheduled_at"] == "2029-12-31T04:00:00+00:00"
    logs_url = f"/api/v1/executions/{created.json['id']}/logs"
    logs = client.get(logs_url, query_string={"since": "2020-01-01T00:00-23:59"})
    assert logs.status_code == 200 and logs.json["items"]
    early = client.get(logs_url, query_string={"since": "0001-01-01T00:00+01:00"})
    assert early.status_code == 422 and "range" in early.get_data(as_text=True)
    assert client.post(f"/api/v1/executions/{created.json['id']}/cancel").status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/v1/workflows", {"name": "   "}, 422),
        ("/api/v1/workflows", {"name": "\t\n"}, 422),
        ("/api/v1/executions", {"workflow_name": "  "}, 422),
        ("/workflow", {"name": " ", "nodes": [{"id": "a", "handler": "noop"}]}, 400),
    ],
    ids=["spaces", "tab and newline", "trigger by blank name", "peer submit"],
)
def test_a_blank_name_is_refused_naming_the_field(client: FlaskClient, path: str, body: Any, status: int) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status, response.json
    assert [p["field"] for p in response.json["errors"]] == [next(iter(body))]
