"""Keys and roles, rate limits and input limits, at the HTTP edge."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import Settings
from app.runtime import Runtime
from app.services import api_keys
from tests.e2e.conftest import unique

ROLES = ("reader", "writer", "admin")
RANK = {None: -1, "reader": 0, "writer": 1, "admin": 2}


@pytest.fixture(scope="module")
def keys(runtime: Runtime) -> dict[str, str]:
    made = {}
    with runtime.sessions() as session:
        for role in ROLES:
            _, made[role] = api_keys.create_key(session, f"{role}-{uuid.uuid4().hex[:6]}", role)
    return made


@pytest.fixture(scope="module")
def things(app: Flask, keys: dict[str, str]) -> dict[str, str]:
    """A workflow, an execution and a dead letter for the endpoints to act on."""
    admin = app.test_client()
    admin.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {keys['admin']}"
    workflow = admin.post(
        "/api/v1/workflows", json={"name": unique(), "activate": True, "nodes": [{"id": "a", "handler": "noop"}]}
    ).json
    execution = admin.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json
    return {"workflow": workflow["id"], "execution": execution["id"]}


# (method, path, body, role needed): every endpoint group.
ENDPOINTS = [
    ("get", "/api/v1/workflows", None, "reader"),
    ("get", "/api/v1/workflows/{workflow}", None, "reader"),
    ("post", "/api/v1/workflows", {"name": "auth-matrix"}, "writer"),
    ("post", "/api/v1/workflows/{workflow}/activate", None, "writer"),
    ("get", "/api/v1/executions", None, "reader"),
    ("get", "/api/v1/executions/{execution}", None, "reader"),
    ("get", "/api/v1/executions/{execution}/results", None, "reader"),
    ("get", "/api/v1/executions/{execution}/logs", None, "reader"),
    ("post", "/api/v1/executions", {"workflow_id": "{workflow}"}, "writer"),
    ("post", "/api/v1/executions/{execution}/cancel", None, "admin"),
    ("post", "/api/v1/executions/{execution}/retry", None, "admin"),
    ("get", "/api/v1/admin/dead-letters", None, "admin"),
    ("get", "/api/v1/admin/keys", None, "admin"),
    ("get", "/api/v1/handlers", None, "reader"),
    # the peers' API: the same roles
    ("post", "/workflow", {"name": "auth-peer", "nodes": [{"id": "a", "handler": "noop"}]}, "writer"),
    ("post", "/workflow/trigger/{execution}", None, "writer"),
    ("get", "/workflows/{execution}", None, "reader"),
    ("get", "/workflows/{execution}/results", None, "reader"),
    ("delete", "/workflows/{execution}", None, "admin"),
    # peer-a's API: the same roles, its own error shape ({"detail": ...})
    ("get", "/api/v1/workflow/{execution}/results", None, "reader"),
    ("delete", "/api/v1/workflow/{execution}", None, "admin"),
    ("get", "/api/v1/admin/dlq", None, "admin"),
]


def fill(value: Any, things: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**things)
    if isinstance(value, dict):
        return {k: fill(v, things) for k, v in value.items()}
    return value


@pytest.mark.parametrize("method,path,body,needed", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
@pytest.mark.parametrize("holder", [None, "bad", *ROLES])
def test_every_endpoint_group_with_every_role(
    app: Flask,
    keys: dict[str, str],
    things: dict[str, str],
    method: str,
    path: str,
    body: Any,
    needed: str,
    holder: str | None,
) -> None:
    client = app.test_client()
    headers = {}
    if holder == "bad":
        headers["Authorization"] = "Bearer sw_not-a-key"
    elif holder:
        headers["Authorization"] = f"Bearer {keys[holder]}"
    response = getattr(client, method)(fill(path, things), json=fill(body, things), headers=headers)
    error = response.json if isinstance(response.json, dict) else {}
    said = error.get("detail")
    if holder in (None, "bad"):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="stepwise"'
        assert said
    elif RANK[holder] < RANK[needed]:
        assert response.status_code == 403
        assert needed in said
    else:
        assert response.status_code not in (401, 403), response.json


def test_health_ready_and_docs_need_no_key(app: Flask) -> None:
    client = app.test_client()
    for path in ("/health", "/ready", "/api/v1/openapi.json", "/docs", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_metrics_can_require_a_key(settings: Settings, keys: dict[str, str]) -> None:
    client = create_app(replace(settings, metrics_require_key=True)).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"X-API-Key": keys["reader"]}).status_code == 200


def test_the_key_works_in_x_api_key_too(app: Flask, keys: dict[str, str]) -> None:
    assert app.test_client().get("/api/v1/workflows", headers={"X-API-Key": keys["reader"]}).status_code == 200


def test_a_revoked_key_stops_working_at_once(client: FlaskClient, app: Flask) -> None:
    made = client.post("/api/v1/admin/keys", json={"name": f"temp-{uuid.uuid4().hex[:6]}", "role": "reader"})
    assert made.status_code == 201 and made.json["key"].startswith("sw_") and made.json["role"] == "reader"
    key = made.json["key"]
    caller = app.test_client()
    assert caller.get("/api/v1/workflows", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    listed = {k["name"]: k for k in client.get("/api/v1/admin/keys", query_string={"limit": 500}).json["items"]}
    assert listed[made.json["name"]]["last_used_at"] is not None and "key" not in listed[made.json["name"]]
    revoked = client.delete(f"/api/v1/admin/keys/{made.json['name']}")
    assert revoked.status_code == 200 and revoked.json["revoked"] is True
    assert caller.get("/api/v1/workflows", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert client.delete(f"/api/v1/admin/keys/{made.json['name']}").status_code == 404
    taken = client.post("/api/v1/admin/keys", json={"name": made.json["name"], "role": "admin"})
    assert taken.status_code == 409


def test_429_after_the_limit_with_retry_after(settings: Settings, keys: dict[str, str], runtime: Runtime) -> None:
    limited = create_app(replace(settings, rate_limit_reader="3/minute", rate_limit_writer="3/minute"))
    with runtime.sessions() as session:
        _, key = api_keys.create_key(session, f"limited-{uuid.uuid4().hex[:6]}", "reader")
    client = limited.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    answers = [client.get("/api/v1/workflows", headers=headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "3" and answers[0].headers["X-RateLimit-Remaining"] == "2"
    refused = answers[3]
    assert refused.json["status"] == 429 and refused.json["type"] == "/problems/rate_limited"
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert int(refused.headers["X-RateLimit-Reset"]) > 0
    # per key: another key is not held back
    other = client.get("/api/v1/workflows", headers={"Authorization": f"Bearer {keys['reader']}"})
    assert other.status_code == 200


def test_the_trigger_has_a_limit_of_its_own(
    settings: Settings, runtime: Runtime, define: Callable[..., dict[str, Any]]
) -> None:
    limited = create_app(replace(settings, rate_limit_trigger="2/minute"))
    with runtime.sessions() as session:
        _, key = api_keys.create_key(session, f"trigger-{uuid.uuid4().hex[:6]}", "writer")
    client = limited.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    workflow = define([{"id": "a", "handler": "noop"}])
    codes = [
        client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}, headers=headers).status_code
        for _ in range(3)
    ]
    assert codes == [201, 201, 429]
    assert client.get("/api/v1/executions", headers=headers).status_code == 200  # reading is not held back


def test_413_415_and_400_in_the_error_shape(settings: Settings, authorized: Callable[[Flask], FlaskClient]) -> None:
    client = authorized(create_app(replace(settings, max_body_bytes=2000)))
    too_big = client.post("/api/v1/workflows", json={"name": "x", "description": "d" * 3000})
    assert too_big.status_code == 413 and too_big.json["status"] == 413
    not_json = client.post("/api/v1/workflows", data="name=x", content_type="application/x-www-form-urlencoded")
    assert not_json.status_code == 415 and "application/json" in not_json.json["detail"]
    plain = client.post("/api/v1/workflows", data='{"name": "x"}', content_type="text/plain")
    assert plain.status_code == 415
    broken = client.post("/api/v1/workflows", data='{"name": ', content_type="application/json")
    assert broken.status_code == 400 and "line 1 column" in broken.json["detail"]
    # a POST without a body needs no content type
    assert client.post("/api/v1/executions/00000000-0000-0000-0000-000000000000/cancel").status_code == 404


def test_auth_disabled_lets_anyone_act_as_admin_and_says_so_loudly(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(replace(settings, auth_disabled=True))
    warnings = [line for line in capsys.readouterr().out.splitlines() if "AUTH_DISABLED" in line]
    assert warnings and '"level": "WARNING"' in warnings[0]
    client = app.test_client()
    assert client.get("/api/v1/admin/keys").status_code == 200  # no key, admin role
    assert create_app(settings).test_client().get("/api/v1/admin/keys").status_code == 401
