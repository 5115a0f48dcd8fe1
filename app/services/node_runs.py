"""The life of node runs on a worker: claim them, resolve their configs, then record how
they ended (completed, failed, deferred, stopped) and let their execution move on.

A claim is one transaction for a whole batch. Outcomes are recorded together, in as
few transactions as the worker chooses (`recording`): one statement per kind of
outcome and execution, then one wave of parent counting. A failure either waits in
PostgreSQL for another attempt (UP_FOR_RETRY, queued by the scheduler) or is final:
FAILED, a dead letter, and its descendants settled by their trigger rules.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app import metrics
from app.dispatch import Dispatcher, NodeJob
from app.domain import peer_a, templates
from app.domain.states import ExecutionStatus, NodeStatus
from app.handlers import registry
from app.handlers.registry import PEER_A, LogLine, clean_text
from app.repositories import audit, claims, node_moves
from app.repositories import dead_letters as dead_letters_repo
from app.repositories import executions as executions_repo
from app.repositories.audit import LogEntry
from app.repositories.claims import ClaimedNode
from app.repositories.node_moves import MovedNode, Result
from app.services import lifecycle, progress
from app.services.progress import Continuation, Finished


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


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: with an output, a failure, a wait (deferred), or stopped by
    a cancel (then only its log lines are kept)."""

    node: ClaimedNode
    output: Any = None
    failure: Failure | None = None
    defer_seconds: float | None = None
    stopped: bool = False
    logs: Sequence[LogLine] = ()


def claim_nodes(session: Session, wanted: Sequence[tuple[uuid.UUID, int]], worker_name: str) -> list[ClaimedNode]:
    """QUEUED -> RUNNING for each (node, attempt) still QUEUED at it, in one transaction;
    a node another delivery already has is not returned."""
    with session.begin():
        return claims.claim(session, wanted, worker_name)


def claim_node(session: Session, node_execution_id: uuid.UUID, attempt: int, worker_name: str) -> ClaimedNode | None:
    """One node's claim; None means another delivery of its job already has it."""
    claimed = claim_nodes(session, [(node_execution_id, attempt)], worker_name)
    return claimed[0] if claimed else None


@contextmanager
def _reading(session: Session) -> Iterator[None]:
    """In the caller's transaction if there is one, else in a short one of its own."""
    if session.in_transaction():
        yield
    else:
        with session.begin():
            yield


def resolve_config(session: Session, node: ClaimedNode, known: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The node's config with its templates resolved against the execution input and the
    outputs of the nodes they name (TemplateResolutionError naming the path), by the rules
    of its handler's dialect. `known`: outputs this process already holds, as templates
    read them, by node id."""
    peer = registry.dialect(node.handler) == PEER_A
    if peer:
        roots = peer_a.config_references(node.config)
    else:
        roots = templates.config_references(node.config) - {templates.INPUT}
    outputs = {node_id: known[node_id] for node_id in roots if known and node_id in known}
    missing = roots - outputs.keys()
    if missing:
        with _reading(session):
            outputs.update(progress.readable_outputs(session, node.execution_id, missing))
    if peer:  # peer-a reads any completed node, and the trigger's params; a miss stays as written
        return peer_a.resolve(node.config, outputs, node.input)
    return templates.resolve(node.config, {templates.INPUT: node.input, **outputs})


@dataclass
class Recorded:
    """What a recording did: the children the worker continues into, claimed for it, and
    the outcomes that came too late to count (their nodes were cancelled or re-run)."""

    claimed: list[ClaimedNode] = field(default_factory=list)
    dropped: list[Outcome] = field(default_factory=list)


class Recording:
    """Outcomes recorded in one transaction: the executions locked once, in id order."""

    def __init__(self, session: Session, dispatcher: Dispatcher) -> None:
        self.session, self.dispatcher = session, dispatcher
        self.jobs: list[NodeJob] = []
        self.stops: list[tuple[str | None, uuid.UUID]] = []  # running nodes cancelled here: told after commit
        self._locked: set[uuid.UUID] = set()

    def record(self, outcomes: Sequence[Outcome], continuation: Continuation | None = None) -> Recorded:
        """Record these outcomes; continue into ready children if `continuation` allows. An
        execution found past its deadline fails first, so what came after it does not count."""
        by_execution: dict[uuid.UUID, list[Outcome]] = defaultdict(list)
        for outcome in outcomes:
            by_execution[outcome.node.execution_id].append(outcome)
        new = [execution_id for execution_id in by_execution if execution_id not in self._locked]
        for execution_id, (status, past_deadline) in executions_repo.lock_many(self.session, new).items():
            self._locked.add(execution_id)
            if past_deadline and status == ExecutionStatus.RUNNING:
                # The scheduler's tick has not come yet. (Checked when the execution is first
                # locked in this transaction: a chain's links recorded in it later are at most
                # WORKER_SLICE_MS later.)
                self.stops += lifecycle.expire(self.session, execution_id)
        recorded = Recorded()
        before = len(continuation.claimed) if continuation else 0
        for execution_id in sorted(by_execution):
            recorded.dropped.extend(self._record_execution(execution_id, by_execution[execution_id], continuation))
        if continuation:
            recorded.claimed = continuation.claimed[before:]
        return recorded

    def _record_execution(
        self, execution_id: uuid.UUID, outcomes: Sequence[Outcome], continuation: Continuation | None
    ) -> list[Outcome]:
        session = self.session
        moved: list[MovedNode] = []
        finished: list[Finished] = []
        by_id = {outcome.node.id: outcome for outcome in outcomes}
        completed = node_moves.record_results(
            session,
            execution_id,
            NodeStatus.COMPLETED,
            [
                Result(o.node.id, o.node.attempt, output=o.output)
                for o in outcomes
                if o.failure is None and o.defer_seconds is None and not o.stopped
            ],
        )
        moved += completed
        finished += [Finished(m.node_id, by_id[m.id].node.dependents, NodeStatus.COMPLETED) for m in completed]
        retries, failures = _sort_failures([o for o in outcomes if o.failure is not None])
        retried = node_moves.record_results(session, execution_id, NodeStatus.UP_FOR_RETRY, retries)
        for m in retried:
            _count_retry(session, by_id[m.id].node.handler)
        failed = node_moves.record_results(session, execution_id, NodeStatus.FAILED, failures)
        for m in failed:
            _dead_letter(session, by_id[m.id])
        finished += [Finished(m.node_id, by_id[m.id].node.dependents, NodeStatus.FAILED) for m in failed]
        deferred = node_moves.record_results(
            session,
            execution_id,
            NodeStatus.DEFERRED,
            [
                Result(o.node.id, o.node.attempt, seconds=o.defer_seconds, details={"wait_seconds": o.defer_seconds})
                for o in outcomes
                if o.defer_seconds is not None and o.failure is None
            ],
        )
        moved += retried + failed + deferred
        counted = {m.id for m in moved}
        _record_handler_logs(session, [o for o in outcomes if o.node.id in counted or o.stopped])
        if finished:
            workflow_id = outcomes[0].node.workflow_id
            jobs, countdown = progress.advance(
                session, self.dispatcher, execution_id, workflow_id, finished, continuation=continuation
            )
            self.jobs.extend(jobs)
            self.stops += lifecycle.conclude(session, execution_id, countdown)
        return [o for o in outcomes if o.node.id not in counted and not o.stopped]


def _sort_failures(outcomes: Sequence[Outcome]) -> tuple[list[Result], list[Result]]:
    """Failed attempts as (those to retry later, those that fail their node for good)."""
    retries, failures = [], []
    for outcome in outcomes:
        node, failure = outcome.node, outcome.failure
        assert failure is not None
        policy = registry.policy(node.handler, node.retry_policy)
        error = failure.as_error()
        if policy.should_retry(node.attempt, failure.retryable):
            delay = policy.delay(node.attempt, failure.retry_after)
            details = {"error": error, "retry_in_seconds": round(delay, 3), "next_attempt": node.attempt + 1}
            retries.append(Result(node.id, node.attempt, error=error, seconds=delay, details=details))
        else:
            reason = (
                "not retryable"
                if not failure.retryable
                else f"no attempts left ({node.attempt} of {policy.max_attempts})"
            )
            failures.append(Result(node.id, node.attempt, error=error, details={"error": error, "retry": reason}))
    return retries, failures


@contextmanager
def recording(session: Session, dispatcher: Dispatcher) -> Iterator[Recording]:
    """A transaction to record outcomes in; the jobs it makes are enqueued after commit, and
    the running nodes it cancelled (a deadline, fail fast) told to stop."""
    opened = Recording(session, dispatcher)
    with session.begin():
        yield opened
    dispatcher.enqueue(opened.jobs)
    dispatcher.stop(opened.stops)


def record_outcome(session: Session, dispatcher: Dispatcher, outcome: Outcome) -> bool:
    """Record one outcome in a transaction of its own; False when it came too late to count."""
    with recording(session, dispatcher) as opened:
        return not opened.record([outcome]).dropped


def complete_node(
    session: Session, dispatcher: Dispatcher, node: ClaimedNode, output: Any, logs: Sequence[LogLine] = ()
) -> bool:
    """RUNNING -> COMPLETED with its output; False when the result came too late to count."""
    return record_outcome(session, dispatcher, Outcome(node, output=output, logs=logs))


def fail_node(
    session: Session, dispatcher: Dispatcher, node: ClaimedNode, failure: Failure, logs: Sequence[LogLine] = ()
) -> bool:
    """An attempt failed: wait for the next one (UP_FOR_RETRY) if the node's retry policy
    gives one, else RUNNING -> FAILED, a dead letter, and the descendants settled.
    False when the failure came too late to count."""
    return record_outcome(session, dispatcher, Outcome(node, failure=failure, logs=logs))


def _record_handler_logs(session: Session, outcomes: Sequence[Outcome]) -> None:
    audit.record(
        session,
        [
            LogEntry(o.node.execution_id, "handler.log", line.message, o.node.node_id, line.level, line.details)
            for o in outcomes
            for line in o.logs
        ],
    )


def _count_retry(session: Session, handler: str) -> None:
    metrics.after_commit(session, lambda: metrics.NODE_RETRIES.labels(handler).inc())


def _dead_letter(session: Session, outcome: Outcome) -> None:
    node, failure = outcome.node, outcome.failure
    assert failure is not None
    category = metrics.category_label(failure.category)
    metrics.after_commit(session, lambda: metrics.DEAD_LETTERS.labels(node.handler, category).inc())
    letter_id = dead_letters_repo.add(
        session,
        {
            "execution_id": node.execution_id,
            "workflow_id": node.workflow_id,
            "node_execution_id": node.id,
            "node_id": node.node_id,
            "handler": node.handler,
            "error_class": failure.error_class,
            "category": failure.category,
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
