"""Regressions from review: what a handler says cannot wedge a node; a forked child's death
is recovered."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flask.testing import FlaskClient

from app import create_app
from app.config import Settings
from tests.e2e.conftest import unique
from tests.support import WorkerPool


def test_unstorable_log_lines_and_errors_do_not_wedge_the_node(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    ok = run(define([{"id": "m", "handler": "messy"}])["id"])
    assert ok["status"] == "COMPLETED" and ok["nodes"][0]["attempt"] == 1
    lines = [e for e in client.get(f"/api/v1/executions/{ok['id']}/logs").json["items"] if e["event"] == "handler.log"]
    assert [(e["level"], e["message"]) for e in lines] == [("info", "level nobody knows"), ("warning", "nul  inside")]
    assert "datetime" in lines[1]["details"]["at"]
    failed = run(define([{"id": "m", "handler": "messy", "config": {"fail": True}}])["id"])
    node = failed["nodes"][0]
    assert (node["status"], node["attempt"], node["error"]["message"]) == ("FAILED", 1, "bad  message")


def test_a_forked_child_that_dies_mid_node_is_recovered(
    authorized: Any, settings: Settings, workers: WorkerPool, finish: Callable[..., dict[str, Any]]
) -> None:
    queue = f"fork-{uuid.uuid4().hex[:8]}"
    client = authorized(create_app(replace(settings, queue_name=queue)))
    (worker,) = workers.start(1, QUEUE_NAME=queue, WORKER_CLASS="fork")
    response = client.post(
        "/api/v1/workflows",
        json={"name": unique(), "activate": True, "nodes": [{"id": "d", "handler": "die_once"}]},
    )
    execution = client.post("/api/v1/executions", json={"workflow_id": response.json["id"]}).json
    detail = finish(execution["id"], timeout=40)
    (node,) = detail["nodes"]
    assert (detail["status"], node["attempt"]) == ("COMPLETED", 2)
    logs = client.get(f"/api/v1/executions/{execution['id']}/logs").json["items"]
    assert [e["details"]["error"]["category"] for e in logs if e["event"] == "node.up_for_retry"] == ["worker_lost"]
    worker.terminate()
