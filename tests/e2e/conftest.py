"""End-to-end helpers: define workflows and run executions through the HTTP API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis

from tests.handlers import runs_key
from tests.support import WorkerPool, wait_for

FINISHED = {"COMPLETED", "FAILED", "CANCELLED"}


def unique(prefix: str = "wf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def define(client: FlaskClient) -> Callable[..., dict[str, Any]]:
    """POST a workflow (active by default) and return its JSON; fails the test on a non-201."""

    def _define(
        nodes: list[dict[str, Any]], name: str | None = None, activate: bool = True, **extra: Any
    ) -> dict[str, Any]:
        response = client.post(
            "/api/v1/workflows", json={"name": name or unique(), "nodes": nodes, "activate": activate, **extra}
        )
        assert response.status_code == 201, response.json
        return response.json

    return _define


@pytest.fixture
def finish(client: FlaskClient) -> Callable[..., dict[str, Any]]:
    """Wait until an execution is finished; its detail JSON."""

    def _finish(execution_id: str, timeout: float = 60.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            body = client.get(f"/api/v1/executions/{execution_id}", query_string={"nodes_limit": 1000}).json
            return body if body["status"] in FINISHED else None

        return wait_for(done, timeout=timeout)

    return _finish


@pytest.fixture
def run(
    client: FlaskClient, workers: WorkerPool, finish: Callable[..., dict[str, Any]]
) -> Callable[..., dict[str, Any]]:
    """Trigger a workflow by id and wait for the execution to finish."""

    def _run(workflow_id: str, input_data: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        response = client.post("/api/v1/executions", json={"workflow_id": workflow_id, "input_data": input_data or {}})
        assert response.status_code == 201, response.json
        return finish(response.json["id"], timeout)

    return _run


@pytest.fixture
def trigger(client: FlaskClient, workers: WorkerPool) -> Callable[..., dict[str, Any]]:
    """POST /executions for a workflow id (extra body fields allowed); the new execution's JSON."""

    def _trigger(workflow_id: str, **body: Any) -> dict[str, Any]:
        response = client.post("/api/v1/executions", json={"workflow_id": workflow_id, **body})
        assert response.status_code == 201, response.json
        return response.json

    return _trigger


@pytest.fixture
def wait_node(client: FlaskClient) -> Callable[..., dict[str, Any]]:
    """Wait until a node of an execution is in one of the given states; its JSON."""

    def _wait(execution_id: str, node_id: str, *statuses: str, timeout: float = 30.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            nodes = client.get(f"/api/v1/executions/{execution_id}").json["nodes"]
            node = next(n for n in nodes if n["node_id"] == node_id)
            return node if node["status"] in statuses else None

        return wait_for(reached, timeout=timeout)

    return _wait


def runs(redis_url: str, execution_id: str, node_id: str) -> list[tuple[str, int, float]]:
    """What tests/handlers.py recorded for a node: (what, attempt, unix time), in order."""
    raw = Redis.from_url(redis_url).lrange(runs_key(execution_id, node_id), 0, -1)
    out = []
    for item in raw:
        what, attempt, at = item.decode().split(":")
        out.append((what, int(attempt), float(at)))
    return out
