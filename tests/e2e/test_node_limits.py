"""A node cannot take its worker down: bounded templates, resolved config and output
size limits, a memory ceiling per node, and heartbeats that go on while a handler burns
CPU. Each failure is for good (one attempt) and names its limit; the worker lives on."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import Settings
from tests.support import WorkerPool, wait_for

FINISHED = {"COMPLETED", "FAILED", "CANCELLED"}


@pytest.fixture(scope="module")
def limited(
    settings: Settings, workers: WorkerPool, authorized: Callable[[Flask], FlaskClient]
) -> Iterator[tuple[FlaskClient, subprocess.Popen[bytes]]]:
    """An API and one worker of their own queue, with small limits."""
    queue = f"limits-{uuid.uuid4().hex[:8]}"
    client = authorized(create_app(replace(settings, queue_name=queue)))
    (worker,) = workers.start(
        1, QUEUE_NAME=queue, MAX_RESOLVED_CONFIG_BYTES="2000", MAX_OUTPUT_BYTES="2000", NODE_MEMORY_LIMIT_MB="64"
    )
    yield client, worker
    worker.terminate()
    worker.wait(10)


def _run(client: FlaskClient, node: dict[str, Any], input_data: dict[str, Any] | None = None) -> dict[str, Any]:
    workflow = client.post("/api/v1/workflows", json={"name": f"lim-{uuid.uuid4().hex[:8]}", "activate": True,
                                                      "nodes": [node]}).json  # fmt: skip
    execution = client.post("/api/v1/executions", json={"workflow_id": workflow["id"], "input_data": input_data or {}})
    assert execution.status_code == 201, execution.json

    def finished() -> dict[str, Any] | None:
        body = client.get(f"/api/v1/executions/{execution.json['id']}").json
        return body["nodes"][0] if body["status"] in FINISHED else None

    return wait_for(finished, timeout=30)


def _resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_a_quadratic_template_fails_at_once_and_for_good(limited: tuple[FlaskClient, Any]) -> None:
    client, worker = limited
    node = _run(client, {"id": "j", "handler": "noop", "config": {"v": "{{ input.s|join(input.s) }}"}},
                {"s": "x" * 20_000})  # fmt: skip
    assert (node["status"], node["attempt"]) == ("FAILED", 1)
    assert "would build a value over 100000" in node["error"]["message"] and not node["error"]["retryable"]
    assert worker.poll() is None


def test_a_config_its_templates_grow_past_the_limit_fails_for_good(limited: tuple[FlaskClient, Any]) -> None:
    client, _ = limited
    node = _run(client, {"id": "c", "handler": "noop", "config": {"v": "{{ input.s ~ input.s ~ input.s }}"}},
                {"s": "x" * 900})  # fmt: skip
    assert (node["status"], node["attempt"]) == ("FAILED", 1)
    assert "MAX_RESOLVED_CONFIG_BYTES (2000)" in node["error"]["message"]
    assert node["error"]["category"] == "too_large"


def test_an_output_over_the_limit_fails_for_good(limited: tuple[FlaskClient, Any]) -> None:
    client, _ = limited
    node = _run(client, {"id": "o", "handler": "big_output", "config": {"chars": 5000}})
    assert (node["status"], node["attempt"]) == ("FAILED", 1)
    assert "MAX_OUTPUT_BYTES (2000)" in node["error"]["message"] and node["error"]["category"] == "too_large"
    small = _run(client, {"id": "o", "handler": "big_output", "config": {"chars": 100}})
    assert small["status"] == "COMPLETED"


def test_a_node_past_the_memory_ceiling_fails_and_its_worker_lives_and_shrinks(
    limited: tuple[FlaskClient, subprocess.Popen[bytes]],
) -> None:
    client, worker = limited
    before = _resident_mb(worker.pid)
    node = _run(client, {"id": "m", "handler": "hog", "config": {"mb": 1500}})
    assert (node["status"], node["attempt"]) == ("FAILED", 1)
    assert node["error"]["category"] == "memory" and "NODE_MEMORY_LIMIT_MB (64 MB)" in node["error"]["message"]
    assert worker.poll() is None
    assert _resident_mb(worker.pid) < before + 64  # handed back, not kept for the worker's life
    assert _run(client, {"id": "n", "handler": "hog", "config": {"mb": 16}})["status"] == "COMPLETED"


def test_heartbeats_go_on_while_a_handler_burns_cpu(
    settings: Settings, client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    seconds = settings.worker_lost_seconds + 2  # silent this long, it would be retried as worker_lost
    detail = run(define([{"id": "b", "handler": "burn", "config": {"seconds": seconds}}])["id"])
    (node,) = detail["nodes"]
    assert (node["status"], node["attempt"]) == ("COMPLETED", 1)
