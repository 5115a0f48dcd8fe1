"""The engine as the bench drives it: workflows defined and triggered through the API,
their end watched in PostgreSQL (a poll every few ms costs the API nothing)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import httpx
from psycopg2.extensions import connection as Connection

from bench import pg
from bench.stack import BenchError

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
POLL_SECONDS = 0.005

Node = dict[str, Any]


def fan_dag(size: int, handler: str = "noop", config: dict[str, Any] | None = None) -> list[Node]:
    """root -> size - 2 parallel nodes -> sink; the middle ones run `handler` with `config`."""
    middle = [
        {"id": f"m{i}", "handler": handler, "dependencies": ["root"], **({"config": config} if config else {})}
        for i in range(size - 2)
    ]
    root = {"id": "root", "handler": "noop", "dependencies": []}
    sink = {"id": "sink", "handler": "noop", "dependencies": [m["id"] for m in middle]}
    return [root, *middle, sink]


def chain_dag(size: int) -> list[Node]:
    """n0 -> n1 -> ... -> n(size-1), all noop."""
    return [{"id": f"n{i}", "handler": "noop", "dependencies": [f"n{i - 1}"] if i else []} for i in range(size)]


class EngineClient:
    """The bench's API client (an admin key) and its PostgreSQL connection for polling."""

    def __init__(self, base_url: str, key: str, db: Connection, run_id: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=300)
        self.db = db
        self.run_id = run_id

    def define(self, label: str, nodes: list[Node]) -> tuple[uuid.UUID, float]:
        """Define and activate a workflow; its id and the POST's round trip in seconds."""
        body = json.dumps({"name": f"bench-{self.run_id}-{label}", "nodes": nodes, "activate": True})
        start = time.perf_counter()
        response = self.http.post(
            "/api/v1/workflows", content=body.encode(), headers={"Content-Type": "application/json"}
        )
        elapsed = time.perf_counter() - start
        _expect(response, 201, f"defining {label}")
        return uuid.UUID(response.json()["id"]), elapsed

    def trigger(self, workflow_id: uuid.UUID) -> uuid.UUID:
        response = self.http.post("/api/v1/executions", json={"workflow_id": str(workflow_id)})
        _expect(response, 201, "triggering")
        return uuid.UUID(response.json()["id"])

    def run(self, workflow_id: uuid.UUID, timeout: float = 1800) -> tuple[uuid.UUID, float]:
        """Trigger and wait for the end: the execution's id and the seconds from just before
        the trigger to the end seen in PostgreSQL. Anything but COMPLETED is an error."""
        start = time.perf_counter()
        execution_id = self.trigger(workflow_id)
        deadline = time.monotonic() + timeout
        with self.db.cursor() as cur:
            while True:
                cur.execute("SELECT status FROM executions WHERE id = %s", (str(execution_id),))
                row = cur.fetchone()
                if row is not None and row[0] in FINAL:
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"execution {execution_id} did not finish within {timeout:g}s")
                time.sleep(POLL_SECONDS)
        elapsed = time.perf_counter() - start
        if row[0] != "COMPLETED":
            raise BenchError(f"execution {execution_id} ended {row[0]}")
        return execution_id, elapsed

    def status_ms(self, execution_id: uuid.UUID, samples: int = 20) -> list[float]:
        """The milliseconds of each of `samples` `GET /api/v1/executions/{id}` with its default parameters."""
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            response = self.http.get(f"/api/v1/executions/{execution_id}")
            times.append((time.perf_counter() - start) * 1000)
            _expect(response, 200, "reading an execution")
        return times

    def unfinished(self, workflow_id: uuid.UUID) -> int:
        """Executions of this workflow not yet in a final state."""
        with self.db.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM executions WHERE workflow_id = %s AND status <> ALL(%s)",
                (str(workflow_id), list(FINAL)),
            )
            return int(pg.one_row(cur)[0])

    def queued_nodes(self) -> int:
        """Nodes waiting for a worker, in every execution (what the API's admission counts)."""
        with self.db.cursor() as cur:
            cur.execute("SELECT count(*) FROM node_executions WHERE status = 'QUEUED'")
            return int(pg.one_row(cur)[0])

    def drain(self, workflow_id: uuid.UUID, timeout: float = 1800) -> None:
        """Wait until every execution of this workflow has ended."""
        deadline = time.monotonic() + timeout
        while (left := self.unfinished(workflow_id)) > 0:
            if time.monotonic() > deadline:
                raise BenchError(f"{left} executions of workflow {workflow_id} still unfinished after {timeout:g}s")
            time.sleep(0.1)

    def revoke_own_key(self, name: str) -> None:
        """Revoke the bench's key (best effort: a failure is reported, not raised)."""
        try:
            response = self.http.delete(f"/api/v1/admin/keys/{name}")
        except httpx.HTTPError as err:
            print(f"could not revoke the bench's key {name}: {err}", file=sys.stderr)
            return
        if response.status_code >= 300:
            print(f"could not revoke the bench's key {name}: HTTP {response.status_code}", file=sys.stderr)

    def close(self) -> None:
        self.http.close()


def _expect(response: httpx.Response, status: int, doing: str) -> None:
    if response.status_code != status:
        raise BenchError(f"{doing}: HTTP {response.status_code}: {response.text[:500]}")
