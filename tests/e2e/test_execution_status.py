"""Status that does not grow with the DAG, ETags for pollers, admission under overload,
keys checked from a cache that a revocation empties, limits a normal client never meets."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import Settings
from app.runtime import Runtime
from app.services import api_keys
from app.services.admission import Admission, queued_nodes


def test_an_execution_answers_counts_and_pages_its_nodes(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    fan = [{"id": f"m{i:03}", "handler": "noop", "dependencies": ["root"]} for i in range(248)]
    nodes = [{"id": "root", "handler": "noop"}, *fan, {"id": "sink", "handler": "noop", "dependencies": ["m000"]}]
    execution_id = run(define(nodes)["id"])["id"]
    first = client.get(f"/api/v1/executions/{execution_id}").json
    assert first["progress"]["total"] == 250 and first["progress"]["completed"] == 250
    assert len(first["nodes"]) == 100 and first["nodes"][0]["node_id"] == "root"
    seen = [n["node_id"] for n in first["nodes"]]
    cursor = first["nodes_next_cursor"]
    while cursor:
        page = client.get(f"/api/v1/executions/{execution_id}/nodes", query_string={"cursor": cursor, "limit": 70})
        assert page.status_code == 200
        seen += [n["node_id"] for n in page.json["items"]]
        cursor = page.json["next_cursor"]
    assert seen == [n["id"] for n in nodes]  # each once, in the workflow's order
    counts_only = client.get(f"/api/v1/executions/{execution_id}", query_string={"nodes_limit": 0}).json
    assert counts_only["nodes"] == [] and counts_only["progress"] == first["progress"]
    filtered = client.get(
        f"/api/v1/executions/{execution_id}", query_string=[("node_status", "FAILED"), ("node_status", "RUNNING")]
    ).json
    assert filtered["nodes"] == [] and filtered["nodes_next_cursor"] is None
    bad = client.get(f"/api/v1/executions/{execution_id}/nodes", query_string={"status": "DONE"})
    assert bad.status_code == 422 and bad.json["errors"][0]["field"].startswith("query.status")


def test_a_poller_gets_304_until_the_execution_changes(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    execution_id = run(define([{"id": "a", "handler": "noop"}])["id"])["id"]
    first = client.get(f"/api/v1/executions/{execution_id}")
    etag = first.headers["ETag"]
    again = client.get(f"/api/v1/executions/{execution_id}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    other = client.get(f"/api/v1/executions/{execution_id}", headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200 and other.json == first.json
    assert client.post(f"/api/v1/executions/{execution_id}/cancel").status_code == 409  # finished: unchanged
    assert client.get(f"/api/v1/executions/{execution_id}", headers={"If-None-Match": etag}).status_code == 304


def test_new_work_is_refused_with_503_while_the_backlog_is_over_the_limit_but_replays_answer(
    settings: Settings, authorized: Callable[[Flask], FlaskClient]
) -> None:
    # A queue no worker serves: what is queued stays queued.
    app = create_app(replace(settings, queue_name=f"stalled-{uuid.uuid4().hex[:8]}"))
    rt = app.extensions["stepwise"]
    with rt.sessions() as session:
        limit = queued_nodes(session) + 3  # the backlog is every queue's: other tests may have left some
    rt.admission = Admission(rt.sessions, limit=limit, fresh_seconds=0)  # counted on every trigger
    client = authorized(app)
    roots = [{"id": f"r{i}", "handler": "noop"} for i in range(3)]
    body = {"name": f"over-{uuid.uuid4().hex[:6]}", "nodes": roots, "activate": True}
    workflow = client.post("/api/v1/workflows", json=body).json
    first = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201
    refused = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]})  # 3 nodes wait now
    # At least its own 2 s (the rate limiter raises it to its window's reset, if later).
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 2
    assert refused.json["type"] == "/problems/overloaded" and refused.json["details"]["limit"] == limit
    assert refused.json["details"]["queued_nodes"] >= limit
    # A client's retry of what was accepted still learns its execution; a new key does not get in.
    replay = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}, headers={"Idempotency-Key": "k1"})
    assert replay.status_code == 200 and replay.json["id"] == first.json["id"]
    other_key = {"Idempotency-Key": "k2"}
    assert client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}, headers=other_key).status_code == 503
    # The peers' submit stores a PENDING run; its trigger, which would queue work, is refused.
    submitted = client.post("/workflow", json={"name": "peer", "nodes": [{"id": "a", "handler": "noop"}]})
    assert submitted.status_code == 200
    assert client.post(f"/workflow/trigger/{submitted.json['execution_id']}").status_code == 503
    assert client.get(f"/workflows/{submitted.json['execution_id']}").json["status"] == "PENDING"
    assert "stepwise_queued_nodes" in client.get("/metrics").get_data(as_text=True)


def test_a_revocation_reaches_another_process_cache_at_once(
    settings: Settings, client: FlaskClient, runtime: Runtime
) -> None:
    other = create_app(settings)  # another gunicorn process: a cache of its own
    with runtime.sessions() as session:
        name = f"cached-{uuid.uuid4().hex[:6]}"
        _, key = api_keys.create_key(session, name, "reader")
    caller = other.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    assert caller.get("/api/v1/workflows", headers=headers).status_code == 200
    assert caller.get("/api/v1/workflows", headers=headers).status_code == 200  # from the cache now
    assert client.delete(f"/api/v1/admin/keys/{name}").status_code == 200  # revoked through this process
    assert caller.get("/api/v1/workflows", headers=headers).status_code == 401


def test_the_default_limits_let_a_burst_of_fifty_triggers_through(
    settings: Settings, runtime: Runtime, define: Callable[..., dict[str, Any]]
) -> None:
    defaults = Settings()
    app = create_app(
        replace(
            settings,
            rate_limit_reader=defaults.rate_limit_reader,
            rate_limit_writer=defaults.rate_limit_writer,
            rate_limit_admin=defaults.rate_limit_admin,
            rate_limit_trigger=defaults.rate_limit_trigger,
            queue_name=f"burst-{uuid.uuid4().hex[:8]}",
        )
    )
    with runtime.sessions() as session:
        _, key = api_keys.create_key(session, f"burst-{uuid.uuid4().hex[:6]}", "writer")
    workflow = define([{"id": "a", "handler": "noop"}])
    client = app.test_client()
    codes = [
        client.post(
            "/api/v1/executions", json={"workflow_id": workflow["id"]}, headers={"Authorization": f"Bearer {key}"}
        ).status_code
        for _ in range(50)
    ]
    assert codes == [201] * 50
