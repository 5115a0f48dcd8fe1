"""How a finished node moves its execution on: no central loop, just the step each
finish causes.

A finished node is counted off its direct children (O(out-degree)); each child
whose trigger rule can now be settled is queued (if its guard holds), skipped or
marked upstream-failed; skips and upstream failures cascade the same way; the
transaction that takes the execution's unfinished count to zero ends it. The
caller holds the execution's row lock (the global lock order) and enqueues the
returned jobs after commit.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import func
from sqlalchemy.orm import Session

from app import metrics
from app.dispatch import Dispatcher, NodeJob
from app.domain import templates
from app.domain.retry import EXECUTION_RETRY
from app.domain.states import ExecutionStatus, NodeStatus
from app.domain.trigger_rules import Readiness, decide
from app.handlers import registry
from app.repositories import executions as executions_repo
from app.repositories import nodes as nodes_repo
from app.repositories import workflows as workflows_repo
from app.repositories.nodes import ChildState

log = logging.getLogger(__name__)

Finished = tuple[str, list[str], NodeStatus]  # node id, its dependents, how it ended

_PARENT_FAILED = frozenset({NodeStatus.FAILED, NodeStatus.UPSTREAM_FAILED})
_READINESS_STATUS = {Readiness.SKIP: NodeStatus.SKIPPED, Readiness.UPSTREAM_FAILED: NodeStatus.UPSTREAM_FAILED}


def dispatch(dispatcher: Dispatcher, jobs: Sequence[NodeJob]) -> None:
    """Enqueue after commit. If Redis is down the nodes stay QUEUED in PostgreSQL, which
    is the truth, and the scheduler enqueues them again once their grace has passed."""
    try:
        dispatcher.enqueue(jobs)
    except RedisError:
        log.exception("could not enqueue %d node(s); they stay QUEUED for recovery", len(jobs))


def node_jobs(queued: Sequence[nodes_repo.MovedNode], timeouts: dict[str, int | None]) -> list[NodeJob]:
    """The RQ jobs for nodes just queued (queueing set each one's job id)."""
    return [NodeJob(str(m.rq_job_id), m.id, m.attempt, timeouts.get(m.node_id)) for m in queued]


@dataclass
class _Tally:
    finished: int = 0
    failed: int = 0


def advance(
    session: Session,
    execution_id: uuid.UUID,
    workflow_id: uuid.UUID,
    finished: Sequence[Finished],
    ready: Sequence[ChildState] = (),
) -> list[NodeJob]:
    """Count each finished node off its children and settle the children whose rule can
    now be decided, plus `ready` (nodes with nothing to wait for: roots at a start,
    nodes a retry reset); cascade; end the execution when nothing is left."""
    jobs: list[NodeJob] = []
    tally = _Tally()
    frontier: deque[Finished] = deque(finished)
    to_settle: list[ChildState] = list(ready)
    guards = _Guards(session, execution_id)
    while frontier or to_settle:
        if to_settle:
            children, cause = to_settle, None
            to_settle = []
        else:
            node_id, dependents, status = frontier.popleft()
            tally.finished += 1
            tally.failed += status == NodeStatus.FAILED
            children = nodes_repo.count_parent_outcome(
                session,
                execution_id,
                workflow_id,
                dependents,
                failed=status in _PARENT_FAILED,
                skipped=status == NodeStatus.SKIPPED,
            )
            cause = node_id
        jobs.extend(_settle(session, execution_id, workflow_id, children, cause, frontier, guards))
    countdown = executions_repo.count_finished(session, execution_id, tally.finished, tally.failed)
    if countdown.unfinished <= 0 and countdown.status == ExecutionStatus.RUNNING:
        end_execution(session, execution_id, countdown.failed)
    return jobs


class _Guards:
    """Evaluates `when`/`branch` guards, reading the input and outputs only when one needs them."""

    def __init__(self, session: Session, execution_id: uuid.UUID) -> None:
        self.session, self.execution_id = session, execution_id
        self._input: dict[str, Any] | None = None

    def holds(self, child: ChildState) -> tuple[bool, str | None]:
        """(whether the child may run, why not)."""
        if not child.guard:
            return True, None
        try:
            roots = templates.guard_references(child.guard) - {templates.INPUT}
            context = {
                templates.INPUT: self._execution_input(),
                **readable_outputs(self.session, self.execution_id, roots),
            }
            return (True, None) if templates.holds(child.guard, context) else (False, f"guard is false: {child.guard}")
        except templates.TemplateResolutionError as err:
            # A guard on an output that was never made (its node was skipped) does not hold.
            return False, f"guard cannot be evaluated: {err}"

    def _execution_input(self) -> dict[str, Any]:
        if self._input is None:
            self._input = executions_repo.input_of(self.session, self.execution_id)
        return self._input


def _settle(
    session: Session,
    execution_id: uuid.UUID,
    workflow_id: uuid.UUID,
    children: Sequence[ChildState],
    cause: str | None,
    frontier: deque[Finished],
    guards: _Guards,
) -> list[NodeJob]:
    settled: dict[Readiness, list[str]] = {r: [] for r in Readiness}
    timeouts: dict[str, int | None] = {}
    skip_reasons: dict[str, str] = {}
    for child in children:
        if child.status != NodeStatus.PENDING:
            continue  # already settled by an earlier parent, or cancelled
        readiness = decide(
            child.trigger_rule,
            parents=child.parents,
            remaining=child.remaining,
            failed=child.failed_parents,
            skipped=child.skipped_parents,
        )
        if readiness == Readiness.RUN:
            runs, why_not = guards.holds(child)
            if not runs:
                readiness, skip_reasons[child.node_id] = Readiness.SKIP, str(why_not)
        settled[readiness].append(child.node_id)
        timeouts[child.node_id] = child.timeout_seconds
    jobs: list[NodeJob] = []
    if settled[Readiness.RUN]:
        queued = nodes_repo.queue(session, execution_id, node_ids=settled[Readiness.RUN], expected=[NodeStatus.PENDING])
        jobs.extend(node_jobs(queued, timeouts))
    for readiness, child_status in _READINESS_STATUS.items():
        if settled[readiness]:
            _finish_unrun(
                session, execution_id, workflow_id, settled[readiness], child_status, cause, skip_reasons, frontier
            )
    return jobs


def _finish_unrun(
    session: Session,
    execution_id: uuid.UUID,
    workflow_id: uuid.UUID,
    node_ids: list[str],
    status: NodeStatus,
    cause: str | None,
    skip_reasons: dict[str, str],
    frontier: deque[Finished],
) -> None:
    guarded = [n for n in node_ids if n in skip_reasons]
    for group, reason in ((guarded, "guard"), ([n for n in node_ids if n not in skip_reasons], None)):
        if not group:
            continue
        details: dict[str, Any] = {"because_of": cause} if cause else {}
        if reason:
            details["reason"] = {n: skip_reasons[n] for n in group}
        moved = nodes_repo.finish(
            session,
            execution_id,
            status,
            node_ids=group,
            expected=[NodeStatus.PENDING],
            error=_upstream_error(cause) if status == NodeStatus.UPSTREAM_FAILED else None,
            details=details or None,
        )
        for wn in workflows_repo.nodes_by_id(session, workflow_id, [m.node_id for m in moved]):
            frontier.append((wn.node_id, wn.dependents, status))


def _upstream_error(parent: str | None) -> dict[str, Any]:
    return {
        "type": "UpstreamFailed",
        "category": "upstream_failed",
        "message": f"did not run: upstream node {parent!r} failed"
        if parent
        else "did not run: an upstream node failed",
        "retryable": False,
    }


def end_execution(session: Session, execution_id: uuid.UUID, failed: int) -> None:
    """Nothing is left to run: COMPLETED, or FAILED if a node failed (whatever ran after it:
    a cleanup node with all_done does not make a failed run a success)."""
    if failed:
        fail_execution(
            session,
            execution_id,
            {"reason": "node_failed", "message": f"{failed} node(s) failed", "failed_nodes": failed},
        )
    elif executions_repo.transition(
        session, execution_id, ExecutionStatus.COMPLETED, message="execution completed", finished_at=func.now()
    ):
        count_finished(session, execution_id, ExecutionStatus.COMPLETED)


def fail_execution(session: Session, execution_id: uuid.UUID, error: dict[str, Any]) -> None:
    """RUNNING -> FAILED; then, if the trigger asked for automatic retries and some are
    left, FAILED -> RETRYING with the time the scheduler resumes it."""
    moved = executions_repo.transition(
        session,
        execution_id,
        ExecutionStatus.FAILED,
        message=f"execution failed: {error['message']}",
        level="error",
        error=error,
        finished_at=func.now(),
    )
    if moved is None:
        return
    count_finished(session, execution_id, ExecutionStatus.FAILED)
    attempt, max_retries = executions_repo.attempts(session, execution_id)
    if attempt > max_retries:
        return
    delay = EXECUTION_RETRY.delay(attempt)
    executions_repo.transition(
        session,
        execution_id,
        ExecutionStatus.RETRYING,
        message=f"automatic retry {attempt} of {max_retries} in {delay:.1f}s",
        details={"retry_in_seconds": round(delay, 3), "retry": attempt, "max_retries": max_retries},
        retry_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, delay),
    )


def count_finished(session: Session, execution_id: uuid.UUID, status: ExecutionStatus) -> None:
    """Count an execution that ended, once its transaction commits."""
    workflow = executions_repo.workflow_name(session, execution_id)
    metrics.after_commit(session, lambda: metrics.EXECUTIONS_FINISHED.labels(workflow, str(status)).inc())


def readable_outputs(session: Session, execution_id: uuid.UUID, node_ids: set[str]) -> dict[str, Any]:
    """The named nodes' outputs as templates and guards read them: with their handlers'
    output aliases (an HTTP node's `data` for its `body`, say)."""
    found = nodes_repo.outputs_by_handler(session, execution_id, node_ids)
    return {node_id: registry.readable_output(handler, output) for node_id, (handler, output) in found.items()}
