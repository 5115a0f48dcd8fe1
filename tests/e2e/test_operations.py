"""Tracing, metrics and readiness, as an operator sees them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import port_for
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.config import Settings
from app.handlers.outbound import CircuitBreaker
from app.runtime import Runtime
from tests.support import WorkerPool, wait_for


def test_a_correlation_id_travels_from_the_trigger_to_the_workers_and_the_logs(
    client: FlaskClient,
    workers: WorkerPool,
    define: Callable[..., dict[str, Any]],
    finish: Callable[..., dict[str, Any]],
) -> None:
    workflow = define([{"id": "a", "handler": "noop"}, {"id": "b", "handler": "log", "dependencies": ["a"],
                                                       "config": {"message": "hello {who}"}}])  # fmt: skip
    cid = f"trace-{workflow['id'][:8]}"
    response = client.post(
        "/api/v1/executions",
        json={"workflow_id": workflow["id"], "input_data": {"who": "ops"}},
        headers={"X-Correlation-ID": cid},
    )
    assert response.headers["X-Correlation-ID"] == cid and response.json["correlation_id"] == cid
    detail = finish(response.json["id"])
    rows = client.get(f"/api/v1/executions/{detail['id']}/logs", query_string={"limit": 1000}).json["items"]
    assert rows and {r["correlation_id"] for r in rows} == {cid}  # the workers' rows too

    def worker_lines() -> list[dict[str, Any]]:
        lines = []
        for path in workers.log_dir.glob("worker-*.log"):
            for line in path.read_text(errors="replace").splitlines():
                if cid in line and line.startswith("{"):
                    lines.append(json.loads(line))
        return lines

    lines = wait_for(lambda: len(worker_lines()) >= 2 and worker_lines(), timeout=10)
    assert {line["correlation_id"] for line in lines} == {cid}
    assert {line["node_id"] for line in lines} >= {"a", "b"} and {line["execution_id"] for line in lines} == {
        detail["id"]
    }


def test_a_correlation_id_is_made_when_absent_or_unusable(client: FlaskClient) -> None:
    made = client.get("/api/v1/workflows").headers["X-Correlation-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    replaced = client.get("/api/v1/workflows", headers={"X-Correlation-ID": "has spaces"}).headers["X-Correlation-ID"]
    assert replaced != "has spaces" and re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert client.get("/nowhere").headers["X-Correlation-ID"]  # errors carry one too


def test_metrics_expose_the_series_after_a_run(
    client: FlaskClient, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    workflow = define([{"id": "a", "handler": "noop"}, {"id": "b", "handler": "fail", "dependencies": ["a"]}])
    run(workflow["id"])
    name = workflow["name"]

    def scraped() -> str | None:
        text = client.get("/metrics").get_data(as_text=True)
        return text if 'stepwise_executions_finished_total{status="FAILED"}' in text else None

    text = wait_for(scraped, timeout=10)
    assert re.search(r"^stepwise_executions_started_total \d", text, re.M)
    # No label carries a caller's own words: a new workflow name adds no series.
    assert name not in text and "workflow=" not in text
    assert re.search(r'stepwise_http_requests_total\{method="POST",route="/api/v1/executions",status="201"\} \d', text)
    assert re.search(r'stepwise_http_request_duration_seconds_bucket\{le="0.005",method="GET"', text)
    # counted in the worker processes, shown here through the shared directory
    assert re.search(r'stepwise_node_duration_seconds_count\{handler="noop",outcome="completed"\} \d', text)
    assert re.search(r'stepwise_dead_letters_total\{category="handler_error",handler="fail"\} \d', text)
    assert "stepwise_queue_depth{queue=" in text and "stepwise_scheduler_lag_seconds " in text


def test_no_metric_label_holds_what_a_caller_chose(client: FlaskClient, runtime: Runtime, settings: Settings) -> None:
    # Three ways a caller could grow /metrics: an invented HTTP method, the host of a URL
    # whose circuit opens, a workflow name (above).
    host = f"h-{uuid.uuid4().hex[:10]}.example"
    for _ in range(5):
        client.open("/api/v1/workflows", method=f"M{uuid.uuid4().hex[:6].upper()}")
    breaker = CircuitBreaker(runtime.redis, settings.circuit_failure_threshold, settings.circuit_cooldown_seconds)
    for _ in range(settings.circuit_failure_threshold):
        breaker.failure(host)
    text = client.get("/metrics").get_data(as_text=True)
    assert host not in text and 'method="M' not in text
    other = r'stepwise_http_requests_total\{method="OTHER",route="unmatched",status="405"\} ([0-9.]+)'
    counted = re.search(other, text)
    assert counted and float(counted[1]) >= 5, re.findall(r"stepwise_http_requests_total\{method=.OTHER.*", text)
    opened = re.search(r'^stepwise_circuit_breakers\{state="open"\} (\d+)', text, re.M)
    assert opened and float(opened[1]) >= 1


def test_ready_turns_503_when_redis_stops_and_200_when_it_is_back(settings: Settings, tmp_path: Any) -> None:
    port = port_for.get_port(None)
    server = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
              "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]  # fmt: skip
    process = subprocess.Popen(server, stdout=subprocess.DEVNULL)
    try:
        app: Flask = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{port}/0"))
        client = app.test_client()
        wait_for(lambda: client.get("/ready").status_code == 200, timeout=10)
        process.terminate()
        process.wait(10)
        down = client.get("/ready")
        assert down.status_code == 503
        assert down.json["redis"].startswith("down") and down.json["database"] == "ok"
        assert client.get("/health").status_code == 200  # alive all the same
        process = subprocess.Popen(server, stdout=subprocess.DEVNULL)
        back = wait_for(lambda: (r := client.get("/ready")).status_code == 200 and r, timeout=10)
        assert back.json["redis"] == "ok"
    finally:
        process.terminate()
        process.wait(10)


def test_every_call_is_a_503_with_retry_after_while_postgresql_is_unreachable(
    settings: Settings, authorized: Callable[[Flask], FlaskClient]
) -> None:
    nobody = f"postgresql://postgres@127.0.0.1:{port_for.get_port(None)}/stepwise_test"  # nothing listens
    client = authorized(create_app(replace(settings, database_url=nobody)))
    calls = [
        ("GET", "/api/v1/workflows", None),
        ("POST", "/api/v1/workflows", {"name": "x", "nodes": [{"id": "a", "handler": "noop"}]}),
        ("POST", "/api/v1/executions", {"workflow_name": "x"}),
        ("GET", f"/api/v1/executions/{uuid.uuid4()}", None),
        ("GET", f"/api/v1/executions/{uuid.uuid4()}/logs", None),
        ("POST", "/workflow", {"nodes": [{"id": "a", "handler": "noop"}]}),
        ("GET", f"/workflows/{uuid.uuid4()}", None),
    ]
    for method, path, body in calls:
        response = client.open(path, method=method, json=body)
        assert response.status_code == 503, (path, response.status_code, response.get_data(as_text=True)[:200])
        assert response.json == {
            "type": "/problems/unavailable",
            "title": "A dependency is unavailable",
            "status": 503,
            "detail": "PostgreSQL is unreachable; try again shortly",
            "instance": path,
        }
        assert int(response.headers["Retry-After"]) > 0
    assert client.get("/health").status_code == 200
    assert client.get("/ready").json["database"].startswith("down")


def test_without_redis_a_trigger_is_still_accepted_and_kept_in_postgresql(
    settings: Settings, authorized: Callable[[Flask], FlaskClient], define: Callable[..., dict[str, Any]]
) -> None:
    # Redis is transport: the node waits QUEUED in PostgreSQL, and the scheduler enqueues it once Redis is back.
    nobody = f"redis://127.0.0.1:{port_for.get_port(None)}/0"
    client = authorized(create_app(replace(settings, redis_url=nobody, queue_name=f"gone-{uuid.uuid4().hex[:8]}")))
    workflow = define([{"id": "a", "handler": "noop"}])
    created = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}, headers={"Idempotency-Key": "r"})
    assert created.status_code == 201, created.json
    detail = client.get(f"/api/v1/executions/{created.json['id']}").json
    assert detail["progress"]["queued"] == 1
    again = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}, headers={"Idempotency-Key": "r"})
    assert again.status_code == 200 and again.json["id"] == created.json["id"]


def test_a_worker_on_its_own_serves_its_metrics_on_metrics_port(
    settings: Settings, workers: WorkerPool, authorized: Callable[[Flask], FlaskClient]
) -> None:
    # As in a container of its own: no metrics directory shared with the API.
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    client = authorized(create_app(replace(settings, queue_name=queue)))
    port = port_for.get_port(None)
    (worker,) = workers.start(1, QUEUE_NAME=queue, METRICS_PORT=str(port), PROMETHEUS_MULTIPROC_DIR=None)
    name = f"own-metrics-{queue}"
    workflow = client.post(
        "/api/v1/workflows", json={"name": name, "activate": True, "nodes": [{"id": "a", "handler": "noop"}]}
    ).json
    execution = client.post("/api/v1/executions", json={"workflow_id": workflow["id"]}).json

    def scraped() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        finished = 'stepwise_executions_finished_total{status="COMPLETED"} 1.0'
        return text if finished in text else None

    text = wait_for(scraped, timeout=15)
    # only what this process counted: one noop node, one execution
    assert 'stepwise_node_duration_seconds_count{handler="noop",outcome="completed"} 1.0' in text
    assert client.get(f"/api/v1/executions/{execution['id']}").json["status"] == "COMPLETED"
    worker.terminate()
    worker.wait(10)
