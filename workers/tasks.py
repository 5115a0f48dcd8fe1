"""The RQ job: run one node attempt. Thin on purpose; PostgreSQL decides what counts."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rq import get_current_job
from rq.timeouts import JobTimeoutException
from sqlalchemy.exc import DBAPIError, OperationalError

from app import correlation, metrics
from app.config import Settings
from app.domain.storable import UnstorableJsonError, check_storable
from app.domain.templates import TemplateResolutionError
from app.handlers import HandlerError, NodeContext, load_extensions, registry
from app.handlers.registry import Defer
from app.handlers.services import HandlerServices
from app.runtime import Runtime
from app.services import node_runs
from app.services.node_runs import Failure

log = logging.getLogger(__name__)

# RQ's stop-job command reaches a SimpleWorker on another thread; it signals the
# main thread, which raises this inside the handler.
STOP_SIGNAL = signal.SIGUSR1

_runtime: Runtime | None = None
_services: HandlerServices | None = None
_runtime_pid: int | None = None


def runtime() -> Runtime:
    """This process's connections, built on first use (and again in a forked child)."""
    global _runtime, _services, _runtime_pid
    if _runtime is None or _runtime_pid != os.getpid():
        settings = Settings.from_env()
        load_extensions(settings.handler_module_names)
        _runtime = Runtime.from_settings(settings)
        _services = HandlerServices.from_settings(settings, _runtime.redis)
        _runtime_pid = os.getpid()
    return _runtime


def handler_services() -> HandlerServices:
    """This process's clients for handlers (HTTP, the circuit breakers)."""
    runtime()
    if _services is None:  # runtime() just built it
        raise RuntimeError("handler services were not built")
    return _services


class NodeStopped(BaseException):
    """Raised inside a handler whose node was cancelled. A BaseException, so a handler's
    `except Exception` does not swallow it."""


class CurrentNode:
    """The node this process is running: reported by the heartbeat, and the one a
    stop-job command may interrupt, only while its handler runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.node_execution_id: uuid.UUID | None = None
        self._in_handler = False

    @contextmanager
    def running(self, node_execution_id: uuid.UUID) -> Iterator[None]:
        with self._lock:
            self.node_execution_id = node_execution_id
        try:
            yield
        finally:
            with self._lock:
                self.node_execution_id = None

    @contextmanager
    def in_handler(self) -> Iterator[None]:
        with self._lock:
            self._in_handler = True
        try:
            yield
        finally:
            with self._lock:
                self._in_handler = False

    def interrupt(self) -> bool:
        """Ask the main thread to stop the handler now; False if no handler is running."""
        with self._lock:
            if not self._in_handler:
                return False
            signal.pthread_kill(threading.main_thread().ident or 0, STOP_SIGNAL)
            return True

    def raise_if_in_handler(self, *_: Any) -> None:
        """The STOP_SIGNAL handler (main thread): stop the handler, if one is still running."""
        if self._in_handler:
            raise NodeStopped()


current = CurrentNode()


def run_node(node_execution_id: str, attempt: int) -> None:
    """Claim the node (a duplicate delivery stops here), run its handler, record the outcome."""
    rt = runtime()
    job = get_current_job()
    worker_name = (job.worker_name if job else None) or socket.gethostname()
    cid = (job.meta or {}).get("correlation_id") if job else None
    node_id = uuid.UUID(node_execution_id)
    with current.running(node_id), correlation.bound(cid), rt.sessions() as session:
        node = node_runs.claim_node(session, node_id, attempt, worker_name)
        if node is None:
            log.debug("node execution %s attempt %s was not QUEUED; nothing to do", node_execution_id, attempt)
            return
        with correlation.bound(cid or node.correlation_id, node.execution_id, node.node_id):
            _run(rt, session, node, attempt)


def _run(rt: Runtime, session: Any, node: node_runs.ClaimedNode, attempt: int) -> None:
    started, outcome = time.perf_counter(), "failed"
    try:
        outcome = _run_handler(rt, session, node, attempt)
    finally:
        elapsed = time.perf_counter() - started
        metrics.NODE_DURATION.labels(node.handler, outcome).observe(elapsed)
        log.info(
            "node %s attempt %s %s in %.1f ms",
            node.node_id,
            attempt,
            outcome,
            elapsed * 1000,
            extra={"handler": node.handler, "attempt": attempt, "outcome": outcome},
        )


def _run_handler(rt: Runtime, session: Any, node: node_runs.ClaimedNode, attempt: int) -> str:
    """Run the handler and record how it ended; that outcome, for the metrics."""
    ctx = NodeContext(
        node.execution_id,
        node.node_id,
        attempt,
        node.input,
        node.correlation_id,
        services=handler_services(),
        woke_from=node.woke_from,
        dry_run=node.dry_run,
    )
    try:
        with current.in_handler():
            output = _as_output(registry.get(node.handler).run(_config(session, node), ctx))
    except NodeStopped:
        log.info("node %s of execution %s stopped: cancelled", node.node_id, node.execution_id)
        node_runs.record_late_logs(session, node, ctx.logs)  # PostgreSQL already says CANCELLED
        return "stopped"
    except Defer as defer:
        _disarm_job_timeout()
        seconds = defer.seconds
        _record(session, node, lambda: node_runs.defer_node(session, node, seconds, ctx.logs))
        return "deferred"
    except Exception as err:
        _disarm_job_timeout()
        failure = _failure(err)
        _record(session, node, lambda: node_runs.fail_node(session, rt.dispatcher, node, failure, ctx.logs))
        return "failed"
    _disarm_job_timeout()
    _record(session, node, lambda: node_runs.complete_node(session, rt.dispatcher, node, output, ctx.logs))
    return "completed"


def _record(session: Any, node: node_runs.ClaimedNode, outcome: Any) -> None:
    """Record the outcome; if the database refuses it (not merely cannot be reached),
    record a plain failure instead of leaving the node RUNNING to be run again."""
    try:
        recorded = outcome()
    except DBAPIError as err:
        if err.connection_invalidated or isinstance(err, OperationalError):
            raise  # PostgreSQL is away: the attempt is recovered when it is back
        log.exception("node %s: its outcome could not be recorded", node.node_id)
        failure = Failure(type(err).__name__, "handler_error", f"its outcome could not be recorded: {err.orig}", False)
        node_runs.fail_node(session, runtime().dispatcher, node, failure)
        return
    if recorded is False:
        log.info("node %s attempt %s: a late result, dropped", node.node_id, node.attempt)


def _config(session: Any, node: node_runs.ClaimedNode) -> dict[str, Any]:
    """The node's config, templates resolved, validated by its handler's schema."""
    try:
        resolved = node_runs.resolve_config(session, node)
    except TemplateResolutionError as err:
        raise HandlerError(str(err), category="validation") from err
    return registry.load_config(node.handler, resolved)


def _failure(err: Exception) -> Failure:
    trace = traceback.format_exc()
    if isinstance(err, HandlerError):
        return Failure(type(err).__name__, err.category, err.message, err.retryable, err.retry_after, trace)
    if isinstance(err, JobTimeoutException):
        return Failure("Timeout", "timeout", f"the node ran past its timeout: {err}", True, None, trace)
    log.error("a handler raised %s", type(err).__name__, exc_info=err)
    return Failure(type(err).__name__, "handler_error", str(err) or type(err).__name__, True, None, trace)


def _disarm_job_timeout() -> None:
    """The handler is done: cancel RQ's job timeout (a SIGALRM in this thread), so it
    cannot fire while the outcome is being recorded."""
    if threading.current_thread() is threading.main_thread():
        signal.alarm(0)


def _as_output(value: Any) -> Any:
    """Outputs are JSON objects PostgreSQL can store; anything else is wrapped as {"result": value}."""
    output = value if isinstance(value, dict) else {"result": value}
    try:
        check_storable(output)
    except UnstorableJsonError as err:
        raise HandlerError(f"the output cannot be stored: {err}", category="validation") from err
    return output
