"""The life of one node run: claim it, then record how it ended (completed, failed,
deferred) and let the choreography move the execution on.

Each step is one transaction. A failure either waits in PostgreSQL for another
attempt (UP_FOR_RETRY, requeued by the scheduler) or is final: FAILED, a dead
letter, and its descendants settled by their trigger rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app import metrics
from app.dispatch import Dispatcher
from app.domain import templates
from app.domain.states import NodeStatus
from app.handlers import registry
from app.handlers.registry import LogLine, clean_text
from app.repositories import audit
from app.repositories import dead_letters as dead_letters_repo
from app.repositories import executions as executions_repo
from app.repositories import nodes as nodes_repo
from app.repositories.audit import LogEntry
from app.repositories.nodes import ClaimedNode
from app.services import choreography
from app.services.choreography import dispatch


@dataclass(frozen=True)
class Failure:
    """How an attempt failed, as the worker (or the scheduler, for a lost worker) saw it."""

    error_class: str
    category: str
    message: str
    retryable: bool
    retry_after: float | None = None
    traceback: str | None = None

    def __post_init__(self) -> None:
        # What a handler raised is not trusted to be storable.
        object.__setattr__(self, "error_class", clean_text(self.error_class, 200))
        object.__setattr__(self, "category", clean_text(self.category, 40) or "handler_error")
        object.__setattr__(self, "message", clean_text(self.message, 10_000))
        if self.traceback is not None:
            object.__setattr__(self, "traceback", clean_text(self.traceback, 50_000))

    def as_error(self) -> dict[str, Any]:
        return {
            "type": self.error_class,
            "category": self.category,
            "message": self.message,
            "retryable": self.retryable,
        }


def claim_node(session: Session, node_execution_id: uuid.UUID, attempt: int, worker_name: str) -> ClaimedNode | None:
    """QUEUED -> RUNNING; None means another delivery of this job already has it."""
    with session.begin():
        return nodes_repo.claim(session, node_execution_id, attempt, worker_name)


def resolve_config(session: Session, node: ClaimedNode) -> dict[str, Any]:
    """The node's config with its templates resolved against the execution input and
    the outputs of the ancestors they name (TemplateResolutionError naming the path)."""
    roots = templates.config_references(node.config) - {templates.INPUT}
    outputs: dict[str, Any] = {}
    if roots:
        with session.begin():
            outputs = choreography.readable_outputs(session, node.execution_id, roots)
    return templates.resolve(node.config, {templates.INPUT: node.input, **outputs})


def complete_node(
    session: Session, dispatcher: Dispatcher, node: ClaimedNode, output: Any, logs: Sequence[LogLine] = ()
) -> bool:
    """RUNNING -> COMPLETED with its output; False when the result came too late to count."""
    with session.begin():
        executions_repo.lock(session, node.execution_id)
        moved = nodes_repo.finish(
            session,
            node.execution_id,
            NodeStatus.COMPLETED,
            ids=[node.id],
            expected=[NodeStatus.RUNNING],
            attempt=node.attempt,
            output=output,
        )
        if not moved:
            return False  # cancelled, or re-queued after this worker was presumed dead
        _record_handler_logs(session, node, logs)
        jobs = choreography.advance(
            session, node.execution_id, node.workflow_id, [(node.node_id, node.dependents, NodeStatus.COMPLETED)]
        )
    dispatch(dispatcher, jobs)
    return True


def fail_node(
    session: Session, dispatcher: Dispatcher, node: ClaimedNode, failure: Failure, logs: Sequence[LogLine] = ()
) -> bool:
    """An attempt failed: wait for the next one (UP_FOR_RETRY) if the node's retry policy
    gives one, else RUNNING -> FAILED, a dead letter, and the descendants settled.
    False when the failure came too late to count."""
    policy = registry.policy(node.handler, node.retry_policy)
    with session.begin():
        executions_repo.lock(session, node.execution_id)
        if policy.should_retry(node.attempt, failure.retryable):
            delay = policy.delay(node.attempt, failure.retry_after)
            moved = nodes_repo.wait_for_retry(
                session, node.execution_id, node.id, node.attempt, delay, failure.as_error()
            )
            if moved:
                _record_handler_logs(session, node, logs)
                metrics.after_commit(session, lambda: metrics.NODE_RETRIES.labels(node.handler).inc())
            return bool(moved)
        reason = (
            "not retryable" if not failure.retryable else f"no attempts left ({node.attempt} of {policy.max_attempts})"
        )
        moved = nodes_repo.finish(
            session,
            node.execution_id,
            NodeStatus.FAILED,
            ids=[node.id],
            expected=[NodeStatus.RUNNING],
            attempt=node.attempt,
            error=failure.as_error(),
            level="error",
            details={"error": failure.as_error(), "retry": reason},
        )
        if not moved:
            return False
        _record_handler_logs(session, node, logs)
        _dead_letter(session, node, failure)
        jobs = choreography.advance(
            session, node.execution_id, node.workflow_id, [(node.node_id, node.dependents, NodeStatus.FAILED)]
        )
    dispatch(dispatcher, jobs)
    return True


def defer_node(session: Session, node: ClaimedNode, seconds: float, logs: Sequence[LogLine] = ()) -> bool:
    """RUNNING -> DEFERRED: the handler asked to wait `seconds` without holding a worker;
    the scheduler queues it again then. False when the node is no longer this attempt's."""
    with session.begin():
        executions_repo.lock(session, node.execution_id)
        moved = nodes_repo.defer(session, node.execution_id, node.id, node.attempt, seconds)
        if moved:
            _record_handler_logs(session, node, logs)
        return bool(moved)


def record_late_logs(session: Session, node: ClaimedNode, logs: Sequence[LogLine]) -> None:
    """Log lines of an attempt whose result no longer counts (cancelled, stopped): still
    worth reading, so they are kept."""
    if logs:
        with session.begin():
            _record_handler_logs(session, node, logs)


def _record_handler_logs(session: Session, node: ClaimedNode, logs: Sequence[LogLine]) -> None:
    if logs:
        audit.record(
            session,
            [
                LogEntry(node.execution_id, "handler.log", line.message, node.node_id, line.level, line.details)
                for line in logs
            ],
        )


def _dead_letter(session: Session, node: ClaimedNode, failure: Failure) -> None:
    metrics.after_commit(session, lambda: metrics.DEAD_LETTERS.labels(node.handler, failure.category).inc())
    letter_id = dead_letters_repo.add(
        session,
        {
            "execution_id": node.execution_id,
            "workflow_id": node.workflow_id,
            "node_execution_id": node.id,
            "node_id": node.node_id,
            "handler": node.handler,
            "error_class": failure.error_class[:200],
            "category": failure.category[:40],
            "message": failure.message,
            "traceback": failure.traceback,
            "attempts": node.attempt,
        },
    )
    audit.record(
        session,
        [
            LogEntry(
                node.execution_id,
                "node.dead_lettered",
                f"node {node.node_id}: dead letter {letter_id} ({failure.category}) after {node.attempt} attempt(s)",
                node.node_id,
                "error",
                {"dead_letter_id": str(letter_id), "category": failure.category, "attempts": node.attempt},
            )
        ],
    )
