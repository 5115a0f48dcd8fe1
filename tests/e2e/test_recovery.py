"""Nothing lost, nothing stuck, nothing run twice: a dead worker, a flushed Redis, a SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis

from app import create_app
from app.config import Settings
from tests.e2e.conftest import unique
from tests.support import WorkerPool, wait_for


@dataclass
class SideQueue:
    """An API whose nodes go to a queue of their own, and the workers that serve it."""

    client: FlaskClient
    name: str
    workers: WorkerPool

    def start_worker(self) -> subprocess.Popen[bytes]:
        (process,) = self.workers.start(1, QUEUE_NAME=self.name)
        return process


@pytest.fixture
def side_queue(settings: Settings, workers: WorkerPool, authorized: Any) -> Iterator[SideQueue]:
    name = f"side-{uuid.uuid4().hex[:8]}"
    app = create_app(replace(settings, queue_name=name))
    yield SideQueue(authorized(app), name, workers)


def define_on(client: FlaskClient, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post("/api/v1/workflows", json={"name": unique(), "activate": True, "nodes": nodes})
    assert response.status_code == 201, response.json
    return response.json


def events(client: FlaskClient, execution_id: str) -> list[dict[str, Any]]:
    return client.get(f"/api/v1/executions/{execution_id}/logs", query_string={"limit": 1000}).json["items"]


def test_flushall_mid_run_and_the_execution_still_completes(
    client: FlaskClient,
    settings: Settings,
    define: Callable[..., dict[str, Any]],
    trigger: Callable[..., dict[str, Any]],
    wait_node: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
) -> None:
    fan = [
        {"id": f"part{i}", "handler": "sleep", "dependencies": ["root"], "config": {"seconds": 0.3}} for i in range(8)
    ]
    workflow = define(
        [
            {"id": "root", "handler": "noop"},
            *fan,
            {"id": "join", "handler": "noop", "dependencies": [f["id"] for f in fan]},
        ]
    )
    execution = trigger(workflow["id"])

    def first_part_running() -> bool:
        nodes = client.get(f"/api/v1/executions/{execution['id']}").json["nodes"]
        return any(n["status"] == "RUNNING" for n in nodes if n["node_id"].startswith("part"))

    wait_for(first_part_running, timeout=10, interval=0.01)  # six parts are still queued
    Redis.from_url(settings.redis_url).flushall()  # and now their jobs are gone
    detail = finish(execution["id"], timeout=40)
    assert detail["status"] == "COMPLETED"
    # every node ran exactly one attempt: lost jobs were enqueued again, nothing twice
    assert {n["attempt"] for n in detail["nodes"]} == {1}
    assert any(e["event"] == "node.requeued" for e in events(client, execution["id"]))


def test_sigterm_is_a_warm_shutdown(
    side_queue: SideQueue, wait_node: Callable[..., dict[str, Any]], finish: Callable[..., dict[str, Any]]
) -> None:
    worker = side_queue.start_worker()
    workflow = define_on(side_queue.client, [{"id": "work", "handler": "sleep", "config": {"seconds": 1.5}}])
    first = side_queue.client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json
    wait_node(first["id"], "work", "RUNNING")
    worker.send_signal(signal.SIGTERM)
    second = side_queue.client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json
    detail = finish(first["id"], timeout=15)
    assert detail["status"] == "COMPLETED" and detail["nodes"][0]["attempt"] == 1  # finished in hand
    assert worker.wait(10) == 0
    time.sleep(0.5)
    left = side_queue.client.get(f"/api/v1/executions/{second['id']}").json
    assert left["nodes"][0]["status"] == "QUEUED"  # taken by no one
    side_queue.client.post(f"/api/v1/executions/{second['id']}/cancel")


def test_one_hundred_parents_racing_dispatch_their_child_once(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    parents = [{"id": f"p{i}", "handler": "noop"} for i in range(100)]
    workflow = define([*parents, {"id": "child", "handler": "noop", "dependencies": [p["id"] for p in parents]}])
    detail = run(workflow["id"])
    assert detail["status"] == "COMPLETED"
    child_events = [e["event"] for e in events(client, detail["id"]) if e["node_id"] == "child"]
    assert child_events == ["node.queued", "node.running", "node.completed"]


def test_the_handler_gets_an_idempotency_key_per_node_of_the_execution(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    detail = run(define([{"id": "pay", "handler": "count"}])["id"])
    output = client.get(f"/api/v1/executions/{detail['id']}/results").json["results"]["pay"]
    assert output["idempotency_key"] == f"{detail['id']}:pay"
