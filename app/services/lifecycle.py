"""An execution's life after its trigger: start, end, cancel, retry, scheduled starts and
deadlines. Each change takes the execution's row lock first (the global lock order),
moves states with guarded statements, and acts on RQ only after commit.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Collection
from enum import StrEnum
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session

from app import metrics
from app.dispatch import Dispatcher, NodeJob
from app.domain.errors import ConflictError, ForbiddenError, NotFoundError
from app.domain.retry import EXECUTION_RETRY
from app.domain.states import (
    EXECUTION_FINISHED,
    EXECUTION_RESUMABLE,
    EXECUTION_RETRYABLE,
    EXECUTION_STARTABLE,
    NODE_RERUNNABLE,
    NODE_UNFINISHED,
    ExecutionStatus,
    NodeStatus,
)
from app.models import DeadLetter, Workflow
from app.repositories import audit, node_moves, node_reads
from app.repositories import dead_letters as dead_letters_repo
from app.repositories import executions as executions_repo
from app.repositories import workflows as workflows_repo
from app.repositories.audit import LogEntry
from app.repositories.executions import Note
from app.repositories.node_counts import Countdown
from app.services import progress
from app.services.admission import Admission


def deadline_from_now(seconds: float | None) -> Any:
    """SQL for now + seconds, or None for no deadline."""
    return func.now() + func.make_interval(0, 0, 0, 0, 0, 0, seconds) if seconds else None


def start(
    session: Session,
    dispatcher: Dispatcher,
    execution_id: uuid.UUID,
    workflow: Workflow,
    dry_run: bool | None = None,
    input: dict[str, Any] | None = None,
) -> list[NodeJob]:
    """PENDING -> RUNNING (its deadline counting from now, a dry run if `dry_run` says so,
    with `input` as its input if given), then settle the root nodes like any other (a root
    may have a `when`); the jobs to enqueue after commit."""
    mode: dict[str, Any] = {} if dry_run is None else {"dry_run": dry_run}
    columns = {**mode, **({"input": input} if input is not None else {})}
    moved = executions_repo.transition(
        session,
        execution_id,
        ExecutionStatus.RUNNING,
        Note("execution started" + (" (dry run)" if dry_run else ""), details={} if dry_run is None else mode),
        {"started_at": func.now(), "deadline_at": deadline_from_now(workflow.timeout_seconds), **columns},
    )
    if moved is None:
        return []  # started or cancelled by someone else: their move, not ours
    roots = node_reads.root_states(session, execution_id, workflow.id)
    jobs, countdown = progress.advance(session, dispatcher, execution_id, workflow.id, [], ready=roots)
    conclude(session, execution_id, countdown)
    return jobs


def conclude(session: Session, execution_id: uuid.UUID, countdown: Countdown) -> list[tuple[str | None, uuid.UUID]]:
    """End a RUNNING execution with nothing left to run: COMPLETED, or FAILED if a node
    failed (whatever ran after it: a cleanup node with all_done does not make a failed run
    a success); or, when its workflow fails fast, at the first failure: then its unfinished
    nodes are cancelled, and (worker, node) of those that were running is returned, for
    the caller to tell to stop once it commits."""
    if countdown.status != ExecutionStatus.RUNNING:
        return []
    if countdown.unfinished > 0:
        if countdown.failures and _fails_fast(session, execution_id):
            stopped = _stop_nodes(session, execution_id, "a node failed and the workflow fails fast")
            fail(session, execution_id, _failed_nodes_error(countdown.failures))
            return stopped
        return []
    if countdown.failures:
        fail(session, execution_id, _failed_nodes_error(countdown.failures))
    elif executions_repo.complete(session, execution_id):
        _count_in_metrics(session, ExecutionStatus.COMPLETED)
    return []


_FAILS_FAST = "stepwise_fails_fast"


def _fails_fast(session: Session, execution_id: uuid.UUID) -> bool:
    """Whether the execution's workflow fails fast: read once per transaction, since every
    node that finishes in an execution with a failure asks again."""
    known: dict[uuid.UUID, bool] = session.info.setdefault(_FAILS_FAST, {})
    if execution_id not in known:
        known[execution_id] = executions_repo.fails_fast(session, execution_id)
    return known[execution_id]


def _failed_nodes_error(failed: int) -> dict[str, Any]:
    return {"reason": "node_failed", "message": f"{failed} node(s) failed", "failed_nodes": failed}


def fail(session: Session, execution_id: uuid.UUID, error: dict[str, Any]) -> None:
    """RUNNING -> FAILED; then, if the trigger asked for automatic retries and some are
    left, FAILED -> RETRYING with the time the scheduler resumes it."""
    moved = executions_repo.transition(
        session,
        execution_id,
        ExecutionStatus.FAILED,
        Note(f"execution failed: {error['message']}", level="error"),
        {"error": error, "finished_at": func.now()},
    )
    if moved is None:
        return
    _count_in_metrics(session, ExecutionStatus.FAILED)
    attempt, max_retries = executions_repo.attempts(session, execution_id)
    if attempt > max_retries:
        return
    delay = EXECUTION_RETRY.delay(attempt)
    executions_repo.transition(
        session,
        execution_id,
        ExecutionStatus.RETRYING,
        Note(
            f"automatic retry {attempt} of {max_retries} in {delay:.1f}s",
            details={"retry_in_seconds": round(delay, 3), "retry": attempt, "max_retries": max_retries},
        ),
        {"retry_at": func.now() + func.make_interval(0, 0, 0, 0, 0, 0, delay)},
    )


def _count_in_metrics(session: Session, status: ExecutionStatus) -> None:
    """Count an execution that ended, once its transaction commits."""
    metrics.after_commit(session, metrics.EXECUTIONS_FINISHED.labels(str(status)).inc)


def _lock(session: Session, execution_id: uuid.UUID) -> ExecutionStatus:
    status = executions_repo.lock(session, execution_id)
    if status is None:
        raise NotFoundError(f"execution {execution_id} not found")
    return status


def _with_workflow(session: Session, execution_id: uuid.UUID) -> tuple[Any, Any]:
    found = executions_repo.get_with_workflow(session, execution_id)
    if found is None:
        raise NotFoundError(f"execution {execution_id} not found")
    return found


def _conflict(execution_id: uuid.UUID, status: ExecutionStatus, action: str) -> ConflictError:
    return ConflictError(
        f"execution {execution_id} is {status} and cannot be {action}",
        details={"current_status": str(status)},
    )


def cancel(session: Session, dispatcher: Dispatcher, execution_id: uuid.UUID) -> None:
    """Cancel an unfinished execution: its unfinished nodes are CANCELLED and running
    ones are told to stop; a late result is dropped by the guards. Final."""
    with session.begin():
        status = _lock(session, execution_id)
        if status in EXECUTION_FINISHED:
            raise _conflict(execution_id, status, "cancelled")
        executions_repo.transition(
            session,
            execution_id,
            ExecutionStatus.CANCELLED,
            Note("execution cancelled", level="warning"),
            {"finished_at": func.now(), "retry_at": None},
        )
        _count_in_metrics(session, ExecutionStatus.CANCELLED)
        stopped = _stop_nodes(session, execution_id, "execution cancelled")
    dispatcher.stop(stopped)


def _stop_nodes(session: Session, execution_id: uuid.UUID, reason: str) -> list[tuple[str | None, uuid.UUID]]:
    """Cancel the unfinished nodes; (worker, node) of those that were running."""
    moved = node_moves.finish(
        session,
        execution_id,
        NodeStatus.CANCELLED,
        expected=NODE_UNFINISHED,
        level="warning",
        details={"reason": reason},
    )
    return [(m.worker_name, m.id) for m in moved if m.previous == NodeStatus.RUNNING]


def retry(session: Session, dispatcher: Dispatcher, execution_id: uuid.UUID) -> None:
    """Run a failed execution's failed, upstream-failed and cancelled nodes again;
    completed ones keep their outputs. Also starts a pending automatic retry now."""
    with session.begin():
        status = _lock(session, execution_id)
        if status not in EXECUTION_RETRYABLE:
            raise _conflict(execution_id, status, "retried")
        jobs = _resume(session, dispatcher, execution_id, None, "retry requested")
    dispatcher.enqueue(jobs)


class TriggerOutcome(StrEnum):
    STARTED = "started"  # it was PENDING: now RUNNING
    RERUN = "rerun"  # it was FAILED: its failed nodes run again
    UNCHANGED = "unchanged"  # running, retrying, completed or cancelled: left alone


def start_or_rerun(
    session: Session,
    dispatcher: Dispatcher,
    execution_id: uuid.UUID,
    *,
    dry_run: bool | None,
    may_rerun: bool,
    admission: Admission | None = None,
) -> TriggerOutcome:
    """The peers' trigger: start a PENDING execution (as a dry run if `dry_run`; None keeps
    what it was made with), rerun a FAILED one's failed nodes (if the caller may retry; in
    the mode its first run had), and leave any other alone. While the backlog is over
    admission's limit, starting and rerunning are refused; leaving alone is still answered."""
    with session.begin():
        status = _lock(session, execution_id)
        if admission is not None and status in EXECUTION_STARTABLE:
            admission.check()
        if status == ExecutionStatus.PENDING:
            _, workflow = _with_workflow(session, execution_id)
            jobs, outcome = start(session, dispatcher, execution_id, workflow, dry_run=dry_run), TriggerOutcome.STARTED
        elif status == ExecutionStatus.FAILED:
            if not may_rerun:
                raise ForbiddenError(
                    "rerunning a failed execution is a retry: it needs the admin role",
                    details={"current_status": str(status)},
                )
            execution, _ = _with_workflow(session, execution_id)
            if dry_run is not None and dry_run != execution.dry_run:
                raise ConflictError(
                    f"a rerun keeps the mode of the first run (dry_run={str(execution.dry_run).lower()})",
                    details={"current_status": str(status), "dry_run": execution.dry_run},
                )
            jobs, outcome = _resume(session, dispatcher, execution_id, None, "triggered again"), TriggerOutcome.RERUN
        else:
            jobs, outcome = [], TriggerOutcome.UNCHANGED
    dispatcher.enqueue(jobs)
    return outcome


def start_pending(
    session: Session,
    dispatcher: Dispatcher,
    execution_id: uuid.UUID,
    input: dict[str, Any] | None,
    admission: Admission | None = None,
) -> bool:
    """peer-a's trigger: start a PENDING execution (with `input` as its input, when given);
    leave any other alone. Whether it started."""
    with session.begin():
        if _lock(session, execution_id) != ExecutionStatus.PENDING:
            return False
        if admission is not None:
            admission.check()
        _, workflow = _with_workflow(session, execution_id)
        jobs = start(session, dispatcher, execution_id, workflow, input=input)
    dispatcher.enqueue(jobs)
    return True


def resume_due(session: Session, dispatcher: Dispatcher, execution_id: uuid.UUID) -> bool:
    """The scheduler's automatic retry of a RETRYING execution whose time has come."""
    with session.begin():
        if executions_repo.lock(session, execution_id) != ExecutionStatus.RETRYING:
            return False
        jobs = _resume(session, dispatcher, execution_id, None, "automatic retry")
    dispatcher.enqueue(jobs)
    return True


def _resume(
    session: Session,
    dispatcher: Dispatcher,
    execution_id: uuid.UUID,
    node_ids: Collection[str] | None,
    reason: str,
) -> list[NodeJob]:
    """FAILED -> RETRYING -> RUNNING (or just -> RUNNING from RETRYING), resetting the
    given failed nodes (all that did not succeed when None) and settling those with
    nothing left to wait for. The caller holds the execution lock."""
    execution, workflow = _with_workflow(session, execution_id)
    if execution.status == ExecutionStatus.FAILED:
        executions_repo.transition(session, execution_id, ExecutionStatus.RETRYING, Note(reason))
    to_reset = node_ids if node_ids is not None else node_reads.ids_with_status(session, execution_id, NODE_RERUNNABLE)
    reset = node_moves.reset(session, execution_id, workflow.id, to_reset, details={"reason": reason})
    # A node running again is no longer dead: its letters go (a new one comes if it fails again).
    dead_letters_repo.remove_for_nodes(session, execution_id, [r.node_id for r in reset])
    if execution.status != ExecutionStatus.RUNNING:
        executions_repo.transition(
            session,
            execution_id,
            ExecutionStatus.RUNNING,
            Note(f"execution resumed: {reason} ({len(reset)} node(s) to run again)"),
            {
                "attempt": execution.attempt + 1,
                "error": None,
                "finished_at": None,
                "retry_at": None,
                "deadline_at": deadline_from_now(workflow.timeout_seconds),
            },
        )
    jobs, countdown = progress.advance(session, dispatcher, execution_id, workflow.id, [], ready=reset)
    conclude(session, execution_id, countdown)
    return jobs


def retry_dead_letter(session: Session, dispatcher: Dispatcher, dead_letter_id: uuid.UUID) -> uuid.UUID:
    """Run a dead-lettered node again, with the descendants its failure held back; the
    execution resumes. The dead letter is removed (a new one is written if it fails again).
    The execution's id."""
    with session.begin():
        letter = dead_letters_repo.get(session, dead_letter_id)
        if letter is None:
            raise NotFoundError(f"dead letter {dead_letter_id} not found")
        status = _lock(session, letter.execution_id)
        if status not in EXECUTION_RESUMABLE:
            raise _conflict(letter.execution_id, status, "resumed")
        held_back = _held_back_by(session, letter, status)
        if not held_back:
            raise ConflictError(
                f"node {letter.node_id!r} is no longer FAILED", details={"execution_id": str(letter.execution_id)}
            )
        jobs = _resume(session, dispatcher, letter.execution_id, held_back, f"dead letter {dead_letter_id} retried")
        dead_letters_repo.remove(session, dead_letter_id)
        audit.record(
            session,
            [
                LogEntry(
                    letter.execution_id,
                    "dead_letter.retried",
                    f"dead letter {dead_letter_id} retried: node {letter.node_id} runs again",
                    letter.node_id,
                    details={"dead_letter_id": str(dead_letter_id), "nodes": sorted(held_back)},
                )
            ],
        )
    dispatcher.enqueue(jobs)
    return letter.execution_id


def _held_back_by(session: Session, letter: DeadLetter, status: ExecutionStatus) -> set[str]:
    """The dead-lettered node, if still FAILED, and its UPSTREAM_FAILED descendants reached
    through UPSTREAM_FAILED nodes only; in a FAILED execution also the nodes its deadline
    cancelled, which would otherwise never run."""
    if letter.node_id not in node_reads.ids_with_status(session, letter.execution_id, [NodeStatus.FAILED]):
        return set()
    cancelled = set()
    if status != ExecutionStatus.RUNNING:
        cancelled = set(node_reads.ids_with_status(session, letter.execution_id, [NodeStatus.CANCELLED]))
    upstream_failed = set(node_reads.ids_with_status(session, letter.execution_id, [NodeStatus.UPSTREAM_FAILED]))
    dependents = {n.node_id: n.dependents for n in workflows_repo.nodes_of(session, letter.workflow_id)}
    found = {letter.node_id}
    todo = deque([letter.node_id])
    while todo:
        for child in dependents.get(todo.popleft(), []):
            if child in upstream_failed and child not in found:
                found.add(child)
                todo.append(child)
    return found | cancelled


def start_scheduled(session: Session, dispatcher: Dispatcher, execution_id: uuid.UUID) -> bool:
    """Start a PENDING execution whose scheduled time has come."""
    with session.begin():
        if executions_repo.lock(session, execution_id) != ExecutionStatus.PENDING:
            return False
        _, workflow = _with_workflow(session, execution_id)
        jobs = start(session, dispatcher, execution_id, workflow)
    dispatcher.enqueue(jobs)
    return True


def expire_deadline(session: Session, dispatcher: Dispatcher, execution_id: uuid.UUID) -> bool:
    """The scheduler's: a RUNNING execution past its deadline fails (see expire)."""
    with session.begin():
        if executions_repo.lock(session, execution_id) != ExecutionStatus.RUNNING:
            return False
        execution, _ = _with_workflow(session, execution_id)
        if execution.deadline_at is None or not executions_repo.is_past(session, execution.deadline_at):
            return False  # resumed with a new deadline since the scheduler looked
        stopped = expire(session, execution_id)
    dispatcher.stop(stopped)
    return True


def expire(session: Session, execution_id: uuid.UUID) -> list[tuple[str | None, uuid.UUID]]:
    """A RUNNING execution past its deadline (the caller holds its lock) fails with reason
    `timeout`: its unfinished nodes are CANCELLED, so a result that comes after the deadline
    does not count. Automatic retries still apply. (worker, node) of the nodes that were
    running, for the caller to tell to stop."""
    _, workflow = _with_workflow(session, execution_id)
    stopped = _stop_nodes(session, execution_id, "execution deadline passed")
    deadline = f"{workflow.timeout_seconds:g}s deadline" if workflow.timeout_seconds else "deadline"
    error: dict[str, Any] = {"reason": "timeout", "message": f"the execution ran past its {deadline}"}
    fail(session, execution_id, error)
    return stopped
