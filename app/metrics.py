"""Prometheus metrics.

Counters and histograms are kept per process and, when PROMETHEUS_MULTIPROC_DIR is
set (gunicorn, or every process of `make run`), written there so one /metrics shows
them all. They are counted after the transaction that made them true commits,
never for one that rolled back. Queue depth, scheduler lag and circuit-breaker
states are read live when /metrics is scraped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from app.domain.states import NODE_WAITING, values

HTTP_REQUESTS = Counter(
    "stepwise_http_requests_total", "HTTP requests, by route, method and status", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "stepwise_http_request_duration_seconds", "HTTP request latency, by route and method", ["route", "method"]
)
# No label holds a client's own words (workflow names, hosts of their URLs, an invented
# HTTP method): every series is one of a set fixed by the code or the deployment's handlers,
# so /metrics cannot be grown by callers.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The failure categories of Stepwise's own handlers and engine; a plug-in's others count as "other".
CATEGORIES = frozenset(
    {
        "circuit_open", "configuration", "connection", "forbidden_destination", "handler_error", "http_3xx",
        "http_4xx", "http_5xx", "memory", "response_too_large", "timeout", "too_large", "validation", "worker_lost",
    }
)  # fmt: skip


def method_label(method: str) -> str:
    return method if method in METHODS else "OTHER"


def category_label(category: str) -> str:
    return category if category in CATEGORIES else "other"


EXECUTIONS_STARTED = Counter("stepwise_executions_started_total", "Executions created")
EXECUTIONS_FINISHED = Counter("stepwise_executions_finished_total", "Executions that ended, by status", ["status"])
NODE_DURATION = Histogram(
    "stepwise_node_duration_seconds",
    "Time in a node's handler, by handler and outcome",
    ["handler", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
NODE_RETRIES = Counter(
    "stepwise_node_retries_total", "Attempts that failed and will be retried, by handler", ["handler"]
)
DEAD_LETTERS = Counter(
    "stepwise_dead_letters_total", "Nodes dead-lettered, by handler and category", ["handler", "category"]
)

_PENDING = "stepwise_metrics_after_commit"


def after_commit(session: Session, count: Callable[[], Any]) -> None:
    """Count once the session's transaction commits (dropped if it rolls back)."""
    session.info.setdefault(_PENDING, []).append(count)


def install(sessions: sessionmaker[Session]) -> None:
    """Run the counts of committed transactions; drop those of rolled-back ones."""

    @event.listens_for(sessions, "after_commit")
    def _committed(session: Session) -> None:
        for count in session.info.pop(_PENDING, []):
            count()

    @event.listens_for(sessions, "after_rollback")
    def _rolled_back(session: Session) -> None:
        session.info.pop(_PENDING, None)


class LiveCollector(Collector):
    """Read when scraped: queue depth, scheduler lag and each host's circuit state."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def collect(self) -> Any:
        rt = self.runtime
        depth = GaugeMetricFamily("stepwise_queue_depth", "Jobs waiting in the RQ queue", labels=["queue"])
        lag = GaugeMetricFamily(
            "stepwise_scheduler_lag_seconds", "How overdue the most overdue wake-up is (retry, delay, start)"
        )
        circuits = GaugeMetricFamily(
            "stepwise_circuit_breakers",
            "Target hosts by the state of their circuit (the hosts are in the logs)",
            labels=["state"],
        )
        backlog = GaugeMetricFamily(
            "stepwise_queued_nodes", "Nodes waiting for a worker (admission refuses triggers past MAX_QUEUED_NODES)"
        )
        try:
            depth.add_metric([rt.settings.queue_name], rt.dispatcher.queue.count)
            breaker = _breaker(rt)
            states = dict.fromkeys(("closed", "half_open", "open"), 0)
            for key in rt.redis.scan_iter(match="stepwise:circuit:*", count=500):
                host = key.decode().removeprefix("stepwise:circuit:")
                if not host.endswith(":probe"):
                    states[breaker.state(host)] += 1
            for state, hosts in states.items():
                circuits.add_metric([state], hosts)
        except Exception:  # Redis away: /ready says so; the gauges are just absent
            pass
        try:
            with rt.engine.connect() as conn:
                overdue = conn.execute(text(_OVERDUE), {"waiting": values(NODE_WAITING)}).scalar()
            lag.add_metric([], float(overdue or 0.0))
            backlog.add_metric([], float(rt.admission.backlog()))
        except Exception:
            pass
        yield from (depth, lag, circuits, backlog)


_OVERDUE = """
SELECT GREATEST(
    (SELECT EXTRACT(EPOCH FROM now() - min(not_before)) FROM node_executions
      WHERE status = ANY(:waiting) AND not_before <= now()),
    (SELECT EXTRACT(EPOCH FROM now() - min(scheduled_at)) FROM executions
      WHERE status = 'PENDING' AND scheduled_at <= now()),
    (SELECT EXTRACT(EPOCH FROM now() - min(retry_at)) FROM executions
      WHERE status = 'RETRYING' AND retry_at <= now()),
    0)
"""


class _ThisProcess(Collector):
    """This process's series, when there is no multiprocess directory to read."""

    def collect(self) -> Any:
        yield from REGISTRY.collect()


def _breaker(rt: Any) -> Any:
    from app.handlers.outbound import CircuitBreaker

    return CircuitBreaker(rt.redis, rt.settings.circuit_failure_threshold, rt.settings.circuit_cooldown_seconds)


def serve(port: int) -> None:
    """Serve this process's series (with its forked children's, through the multiprocess
    directory) on PORT, from a daemon thread: for a worker or scheduler that does not share
    its metrics directory with the API."""
    registry: CollectorRegistry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)


def exposition(runtime: Any) -> tuple[bytes, str]:
    """The /metrics body and content type: every process's series, plus the live ones."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(LiveCollector(runtime))
    return generate_latest(registry), CONTENT_TYPE_LATEST
