"""The measurements, one method per step, in the order `run_all` takes them."""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from rq import Queue

from bench import bare_app, load, pg, plain_rq
from bench.client import EngineClient, chain_dag, fan_dag
from bench.report import Report
from bench.slow_server import SlowServer
from bench.stack import Stack, free_port, rss_kib

HTTP_DELAY_SECONDS = 0.05
RAISED_RATE_LIMIT = "1000000/minute"  # the API's own throughput is measured, not its rate limits
LOAD_CLIENTS = 8
BACKLOG_CLIENTS = 16


@dataclass(frozen=True)
class Sizes:
    """How big each run is. The figure names keep the full sizes whatever these are."""

    fan_small: int  # fanout1000_engine, and rq_jobs' job count
    fan_large: int  # fanout10000_engine, define10000, status10000
    chain_short: int  # chain200_engine, and rq_hop's chain
    chain_long: int  # chain2000_engine
    http_fan: int  # http500_*: parallel http_request nodes
    load_seconds: float  # trigger_engine and bare_insert, after warmup_seconds
    warmup_seconds: float
    backlog_seconds: float


FULL = Sizes(1000, 10_000, 200, 2000, 500, 10, 2, 60)
QUICK = Sizes(200, 2000, 50, 200, 100, 3, 1, 10)


def say(text: str) -> None:
    """Progress, on stderr, so stdout stays the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Bench:
    """Runs the selected steps against a started stack and records into `report`."""

    def __init__(
        self, stack: Stack, client: EngineClient, sizes: Sizes, workers: int, selected: set[str], report: Report
    ) -> None:
        self.stack, self.client, self.sizes, self.workers = stack, client, sizes, workers
        self.selected, self.report = selected, report
        self.slow: SlowServer | None = None
        self.rss_before: dict[int, int] = {}
        self.http_workflow: uuid.UUID | None = None

    def wants(self, *names: str) -> bool:
        return any(name in self.selected for name in names)

    def record(self, name: str, value: float, note: str = "") -> None:
        if name in self.selected:
            self.report.record(name, value, note)

    def run_all(self) -> None:
        steps: list[tuple[tuple[str, ...], Callable[[], None]]] = [
            (("rq_jobs",), self.rq_jobs),
            (("rq_hop",), self.rq_hop),
            (("fanout1000_engine",), self.fanout_small),
            (("chain200_engine",), self.chain_short),
            (("fanout10000_engine", "define10000", "status10000"), self.fanout_large),
            (("chain2000_engine",), self.chain_long),
            (("http500_engine",), self.http_engine),
            (("trigger_engine",), self.trigger),
            (("bare_insert",), self.bare_insert),
            (("backlog_p99",), self.backlog),
            (("worker_rss_growth",), self.rss_growth),
            # Last: it restarts the workers, whose memory the step before has measured.
            (("http500_serial",), self.http_serial),
        ]
        self.warm_up()
        for names, step in steps:
            if self.wants(*names):
                step()

    def warm_up(self) -> None:
        say("warm-up: a 5-node chain through the engine, a 5-hop plain RQ chain")
        workflow, _ = self.client.define("warmup", chain_dag(5))
        self.client.run(workflow)
        plain_rq.ms_per_hop(self.stack.queue, 5)
        self.rss_before = {pid: rss_kib(pid) for pid in self.stack.worker_pids()}

    def rq_jobs(self) -> None:
        n = self.sizes.fan_small
        say(f"rq_jobs: {n} plain RQ no-op jobs enqueued at once")
        self.record("rq_jobs", plain_rq.jobs_per_second(self.stack.queue, n), f"{n} jobs")

    def rq_hop(self) -> None:
        n = self.sizes.chain_short
        say(f"rq_hop: a plain RQ chain of {n}")
        self.record("rq_hop", plain_rq.ms_per_hop(self.stack.queue, n), f"chain of {n}")

    def fanout_small(self) -> None:
        n = self.sizes.fan_small
        say(f"fanout1000_engine: root -> {n - 2} noop -> sink")
        workflow, _ = self.client.define(f"fanout{n}", fan_dag(n))
        _, seconds = self.client.run(workflow)
        self.record("fanout1000_engine", n / seconds, f"{n} nodes in {seconds:.2f} s")

    def chain_short(self) -> None:
        self._chain("chain200_engine", self.sizes.chain_short)

    def chain_long(self) -> None:
        self._chain("chain2000_engine", self.sizes.chain_long)

    def _chain(self, name: str, n: int) -> None:
        say(f"{name}: a chain of {n} noop nodes")
        workflow, _ = self.client.define(f"chain{n}", chain_dag(n))
        _, seconds = self.client.run(workflow)
        self.record(name, seconds * 1000 / n, f"{n} nodes in {seconds:.2f} s")

    def fanout_large(self) -> None:
        n = self.sizes.fan_large
        say(f"define10000: POST /api/v1/workflows with root -> {n - 2} noop -> sink, activated")
        workflow, define_seconds = self.client.define(f"fanout{n}", fan_dag(n))
        self.record("define10000", define_seconds, f"{n} nodes, the POST's round trip")
        if not self.wants("fanout10000_engine", "status10000"):
            return
        say(f"fanout10000_engine: running it ({n} nodes)")
        execution, seconds = self.client.run(workflow)
        self.record("fanout10000_engine", n / seconds, f"{n} nodes in {seconds:.2f} s")
        if self.wants("status10000"):
            say("status10000: GET /api/v1/executions/{id} of that execution, 20 times")
            times = self.client.status_ms(execution)
            note = f"median of 20 GETs, default parameters; fastest {min(times):.1f} ms, slowest {max(times):.1f} ms"
            self.record("status10000", statistics.median(times), note)

    def _http_run(self, name: str) -> float:
        n = self.sizes.http_fan
        if self.slow is None:
            self.slow = SlowServer(HTTP_DELAY_SECONDS)
        if self.http_workflow is None:
            nodes = fan_dag(n + 2, handler="http_request", config={"url": self.slow.url})
            self.http_workflow, _ = self.client.define(f"http{n}", nodes)
        say(f"{name}: root -> {n} http_request nodes ({HTTP_DELAY_SECONDS * 1000:.0f} ms each) -> sink")
        self.slow.reset()
        _, seconds = self.client.run(self.http_workflow)
        if self.slow.served < n:
            say(f"warning: the local HTTP server answered {self.slow.served} requests for {n} nodes")
        self.record(name, seconds, f"{n} calls; at most {self.slow.peak} at once at the server")
        return seconds

    def http_engine(self) -> None:
        self._http_run("http500_engine")

    def http_serial(self) -> None:
        say(f"http500_serial: restarting {self.workers} workers with WORKER_CONCURRENCY=1")
        self.stack.stop_workers()
        self.stack.start_workers(self.workers, WORKER_CONCURRENCY="1")
        say(f"workers up: pids {', '.join(map(str, self.stack.worker_pids()))}")
        seconds = self._http_run("http500_serial")
        if "http500_engine" in self.report.values:
            ratio = seconds / self.report.values["http500_engine"]
            self.report.note("http500_serial", f"{ratio:.1f} x http500_engine")

    def _one_node_workflow(self, label: str) -> uuid.UUID:
        workflow, _ = self.client.define(label, [{"id": "only", "handler": "noop", "dependencies": []}])
        return workflow

    def trigger(self) -> None:
        """The API's own throughput, as bare_insert measures the bare app's: an API of its
        own whose jobs go to a queue no worker serves (so no worker competes for the CPU)
        and whose admission is off (its backlog only grows); what it made is deleted after."""
        s = self.sizes
        held = f"{self.stack.queue.name}-held"
        limits = {f"RATE_LIMIT_{role}": RAISED_RATE_LIMIT for role in ("READER", "WRITER", "ADMIN", "TRIGGER")}
        base = self.stack.start_gunicorn(
            "api-trigger", "app:create_app()", free_port(), QUEUE_NAME=held, MAX_QUEUED_NODES="0", **limits
        )
        try:
            workflow = self._one_node_workflow("trigger")
            url = f"{base}/api/v1/executions"
            body = json.dumps({"workflow_id": str(workflow)})
            say(f"trigger_engine: {LOAD_CLIENTS} clients, {s.warmup_seconds:g} s + {s.load_seconds:g} s, nothing run")
            load.post(url, body, LOAD_CLIENTS, s.warmup_seconds, self._authorization())
            result = load.post(url, body, LOAD_CLIENTS, s.load_seconds, self._authorization())
        finally:
            self.stack.stop_server("api-trigger")
            Queue(held, connection=self.stack.redis).delete(delete_jobs=True)
        self.record("trigger_engine", result.ok_per_second, _load_note(result))
        with self.client.db.cursor() as cur:  # autocommit
            cur.execute("DELETE FROM executions WHERE workflow_id = %s", (str(workflow),))

    def bare_insert(self) -> None:
        s = self.sizes
        say(f"bare_insert: the bare Flask app; {LOAD_CLIENTS} clients, {s.warmup_seconds:g} s + {s.load_seconds:g} s")
        bare_app.ensure_table(self.stack.env["DATABASE_URL"])
        base = self.stack.start_gunicorn("bare-app", "bench.bare_app:create_app()", free_port())
        try:
            # The trigger's body and headers, byte for byte: only the server differs.
            body = json.dumps({"workflow_id": str(uuid.uuid4())})
            load.post(f"{base}/insert", body, LOAD_CLIENTS, s.warmup_seconds, self._authorization())
            result = load.post(f"{base}/insert", body, LOAD_CLIENTS, s.load_seconds, self._authorization())
        finally:
            self.stack.stop_server("bare-app")
        self.record("bare_insert", result.ok_per_second, _load_note(result))

    def backlog(self) -> None:
        seconds = self.sizes.backlog_seconds
        workflow = self._one_node_workflow("backlog")
        url = f"{self.client.http.base_url}/api/v1/executions"
        say(f"backlog_p99: {BACKLOG_CLIENTS} clients triggering for {seconds:g} s, workers running")
        result = load.post(
            url, json.dumps({"workflow_id": str(workflow)}), BACKLOG_CLIENTS, seconds, self._authorization()
        )
        say("backlog_p99: waiting for those executions to end")
        self._drain(workflow, "backlog_p99")
        with self.client.db.cursor() as cur:
            cur.execute(
                "SELECT count(*),"
                " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)),"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at))"
                " FROM executions WHERE workflow_id = %s",
                (str(workflow),),
            )
            count, p99, p50 = pg.one_row(cur)
        self.record(
            "backlog_p99",
            float(p99 or 0),
            f"accepted {result.ok} (2xx), refused {result.refused} (503), other {result.other}, "
            f"socket errors {result.socket_errors}",
        )
        self.report.note(
            "backlog_p99", f"{count} executions; trigger-to-end p50 {float(p50 or 0):.3f} s; {_load_note(result)}"
        )

    def _drain(self, workflow: uuid.UUID, name: str) -> None:
        """Wait for every execution of the workflow to end; note any that did not complete."""
        self.client.drain(workflow)
        with self.client.db.cursor() as cur:
            cur.execute(
                "SELECT status, count(*) FROM executions WHERE workflow_id = %s AND status <> 'COMPLETED' GROUP BY 1",
                (str(workflow),),
            )
            bad = dict(cur.fetchall())
        if bad:
            say(f"warning: {name}: executions not COMPLETED: {bad}")
            if name in self.report.values:
                self.report.note(name, f"executions not COMPLETED: {bad}")

    def rss_growth(self) -> None:
        say("worker_rss_growth: VmRSS of each worker, after the warm-up and now")
        per_worker = [(pid, before, rss_kib(pid)) for pid, before in self.rss_before.items()]
        growth = max(100 * (after - before) / before for _, before, after in per_worker)
        self.record("worker_rss_growth", growth, "the largest growth among the workers")
        for i, (pid, before, after) in enumerate(per_worker, start=1):
            self.report.note(
                "worker_rss_growth", f"worker {i} (pid {pid}): {before / 1024:.1f} -> {after / 1024:.1f} MiB"
            )

    def _authorization(self) -> str:
        return str(self.client.http.headers["Authorization"])

    def close(self) -> None:
        if self.slow is not None:
            self.slow.close()


def _load_note(result: load.LoadResult) -> str:
    note = f"{result.ok} ok in {result.seconds:.1f} s, latency p50 {result.p50_ms:.1f} ms p99 {result.p99_ms:.1f} ms"
    if result.refused or result.other or result.socket_errors:
        note += f"; refused {result.refused}, other {result.other}, socket errors {result.socket_errors}"
    return note
