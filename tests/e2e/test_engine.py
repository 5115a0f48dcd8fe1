"""The worker's engine on real workers: continuation, batches delivered twice, cancel racing
a chain, HTTP nodes in flight together, and a pooled node past its timeout."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import create_app
from app.config import Settings
from app.dispatch import NodeJob
from app.handlers.registry import RunMode
from app.models import Execution, NodeExecution
from app.runtime import Runtime
from tests.support import FakeServices, WorkerPool, wait_for


@pytest.fixture
def side(settings: Settings, workers: WorkerPool, authorized: Any) -> Iterator[tuple[FlaskClient, Runtime, str]]:
    """An API whose nodes go to a queue no worker serves until the test starts one."""
    name = f"side-{uuid.uuid4().hex[:8]}"
    app = create_app(replace(settings, queue_name=name))
    yield authorized(app), app.extensions["stepwise"], name


def nodes_of(runtime: Runtime, execution_id: str) -> dict[str, NodeExecution]:
    with runtime.sessions() as s, s.begin():
        rows = s.scalars(select(NodeExecution).where(NodeExecution.execution_id == uuid.UUID(execution_id)))
        return {n.node_id: n for n in rows}


def counts_are_exact(runtime: Runtime, execution_id: str) -> bool:
    with runtime.sessions() as s, s.begin():
        kept = s.scalar(select(Execution.node_counts).where(Execution.id == uuid.UUID(execution_id)))
        actual = dict(
            s.execute(
                select(NodeExecution.status, func.count())
                .where(NodeExecution.execution_id == uuid.UUID(execution_id))
                .group_by(NodeExecution.status)
            ).all()
        )
    return {k: v for k, v in kept.items() if v} == actual


def test_a_chain_runs_without_a_job_per_node(
    runtime: Runtime, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    chain = [{"id": "n0", "handler": "noop"}] + [
        {"id": f"n{i}", "handler": "noop", "dependencies": [f"n{i - 1}"]} for i in range(1, 40)
    ]
    detail = run(define(chain)["id"])
    assert detail["status"] == "COMPLETED"
    nodes = nodes_of(runtime, detail["id"])
    # The worker that finished a link ran the next itself: far fewer jobs than nodes.
    assert len({n.rq_job_id for n in nodes.values()}) < 10
    for i in range(1, 40):
        assert nodes[f"n{i - 1}"].finished_at <= nodes[f"n{i}"].started_at
    assert counts_are_exact(runtime, detail["id"])


def test_a_batch_delivered_twice_runs_each_node_once(
    side: tuple[FlaskClient, Runtime, str], workers: WorkerPool, finish: Callable[..., dict[str, Any]]
) -> None:
    client, rt, queue_name = side
    nodes = [{"id": f"r{i}", "handler": "noop"} for i in range(40)]
    workflow = client.post(
        "/api/v1/workflows", json={"name": f"twice-{uuid.uuid4().hex[:6]}", "nodes": nodes, "activate": True}
    ).json
    execution = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json
    jobs = rt.dispatcher.queue.get_jobs()
    assert jobs and all(len(job.args[0]) > 1 for job in jobs)  # in-process roots go out in batches
    copies = [
        NodeJob(f"copy-{job.id}", RunMode(job.args[1]), tuple((uuid.UUID(n), a) for n, a in job.args[0]))
        for job in jobs
    ]
    rt.dispatcher.enqueue(copies)  # every batch a second time, as a redelivery would
    workers.start(2, QUEUE_NAME=queue_name)
    detail = finish(execution["id"])
    assert detail["status"] == "COMPLETED"
    logs = client.get(f"/api/v1/executions/{execution['id']}/logs", query_string={"limit": 1000}).json["items"]
    assert sum(e["event"] == "node.running" for e in logs) == 40
    assert sum(e["event"] == "node.completed" for e in logs) == 40
    assert {n.attempt for n in nodes_of(rt, execution["id"]).values()} == {1}


def test_a_cancel_racing_a_chain_leaves_nothing_running_and_counts_exact(
    client: FlaskClient,
    runtime: Runtime,
    define: Callable[..., dict[str, Any]],
    trigger: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
) -> None:
    chain = [{"id": "n0", "handler": "noop"}] + [
        {"id": f"n{i}", "handler": "noop", "dependencies": [f"n{i - 1}"]} for i in range(1, 400)
    ]
    execution = trigger(define(chain)["id"])

    def some_done() -> bool:
        return (
            client.get(f"/api/v1/executions/{execution['id']}", query_string={"nodes_limit": 0}).json["progress"][
                "completed"
            ]
            > 5
        )

    wait_for(some_done, timeout=30, interval=0.005)
    cancelled = client.post(f"/api/v1/executions/{execution['id']}/cancel")
    assert cancelled.status_code in (200, 409)  # it may just have completed
    detail = finish(execution["id"])
    nodes = nodes_of(runtime, execution["id"])
    if detail["status"] == "CANCELLED":
        assert {n.status for n in nodes.values()} <= {"COMPLETED", "CANCELLED"}
        logs = client.get(f"/api/v1/executions/{execution['id']}/logs", query_string={"limit": 1000}).json["items"]
        cancel = next(e["id"] for e in logs if e["event"] == "execution.cancelled")
        # Whatever completed did so before the cancel took the execution; nothing after it.
        assert all(e["id"] < cancel for e in logs if e["event"] == "node.completed")
    assert counts_are_exact(runtime, execution["id"])


def test_http_nodes_wait_on_the_network_together(
    side: tuple[FlaskClient, Runtime, str],
    workers: WorkerPool,
    fake_services: FakeServices,
    finish: Callable[..., dict[str, Any]],
) -> None:
    client, _, queue_name = side
    tag = uuid.uuid4().hex
    calls = [
        {
            "id": f"call{i}",
            "handler": "http_request",
            "config": {"url": fake_services.url(f"/slow?seconds=0.5&tag={tag}")},
        }
        for i in range(12)
    ]
    workflow = client.post("/api/v1/workflows", json={"name": f"io-{tag[:6]}", "nodes": calls, "activate": True}).json
    execution = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json
    workers.start(1, QUEUE_NAME=queue_name, WORKER_CONCURRENCY="8")
    assert finish(execution["id"])["status"] == "COMPLETED"
    spans = fake_services.spans[tag]
    # One worker had up to 8 of them in flight at once (its pool), never more.
    in_flight = max(sum(start <= at < end for start, end in spans) for at, _ in spans)
    assert 6 <= in_flight <= 8


def test_a_pooled_node_past_its_timeout_fails_at_once(
    side: tuple[FlaskClient, Runtime, str],
    workers: WorkerPool,
    fake_services: FakeServices,
    finish: Callable[..., dict[str, Any]],
) -> None:
    client, rt, queue_name = side
    slow = {
        "id": "slow",
        "handler": "http_request",
        "timeout_seconds": 1,
        "retry": {"max_attempts": 1},
        "config": {"url": fake_services.url("/slow?seconds=4"), "timeout_seconds": 30},
    }
    workflow = client.post(
        "/api/v1/workflows", json={"name": f"late-{uuid.uuid4().hex[:6]}", "nodes": [slow], "activate": True}
    ).json
    execution = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json
    workers.start(1, QUEUE_NAME=queue_name)
    detail = finish(execution["id"], timeout=20)
    node = detail["nodes"][0]
    assert (detail["status"], node["status"], node["error"]["category"]) == ("FAILED", "FAILED", "timeout")
    took = datetime.fromisoformat(node["finished_at"]) - datetime.fromisoformat(node["started_at"])
    assert took.total_seconds() < 3  # failed at its timeout, not when the call came back
    assert counts_are_exact(rt, execution["id"])


def test_a_pooled_node_held_longer_than_the_loss_window_is_not_run_again(
    side: tuple[FlaskClient, Runtime, str],
    settings: Settings,
    workers: WorkerPool,
    fake_services: FakeServices,
    finish: Callable[..., dict[str, Any]],
) -> None:
    client, _, queue_name = side
    tag = uuid.uuid4().hex
    seconds = settings.worker_lost_seconds + 2  # the heartbeat reports it as held meanwhile
    call = {
        "id": "call",
        "handler": "http_request",
        "config": {"url": fake_services.url(f"/slow?seconds={seconds}&tag={tag}")},
    }
    workflow = client.post(
        "/api/v1/workflows", json={"name": f"held-{tag[:6]}", "nodes": [call], "activate": True}
    ).json
    execution = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json
    workers.start(1, QUEUE_NAME=queue_name)
    detail = finish(execution["id"], timeout=30)
    assert (detail["status"], detail["nodes"][0]["attempt"]) == ("COMPLETED", 1)
    assert len(fake_services.spans[tag]) == 1  # called once


def test_sigterm_lets_the_pooled_nodes_finish_and_records_them(
    side: tuple[FlaskClient, Runtime, str],
    workers: WorkerPool,
    fake_services: FakeServices,
    finish: Callable[..., dict[str, Any]],
) -> None:
    client, _, queue_name = side
    tag = uuid.uuid4().hex
    calls = [
        {
            "id": f"call{i}",
            "handler": "http_request",
            "config": {"url": fake_services.url(f"/slow?seconds=1&tag={tag}")},
        }
        for i in range(4)
    ]
    workflow = client.post("/api/v1/workflows", json={"name": f"term-{tag[:6]}", "nodes": calls, "activate": True}).json
    execution = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json
    (worker,) = workers.start(1, QUEUE_NAME=queue_name)

    def all_running() -> bool:
        nodes = client.get(f"/api/v1/executions/{execution['id']}").json["nodes"]
        return all(n["status"] == "RUNNING" for n in nodes)

    wait_for(all_running, timeout=15, interval=0.01)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0
    detail = client.get(f"/api/v1/executions/{execution['id']}").json  # recorded before it exited
    assert detail["status"] == "COMPLETED" and {n["attempt"] for n in detail["nodes"]} == {1}
    assert len(fake_services.spans[tag]) == 4
