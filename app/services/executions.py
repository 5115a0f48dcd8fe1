"""Use cases for executions: trigger (idempotently), start, and read back."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from app import metrics
from app.dispatch import Dispatcher, NodeJob
from app.domain import dag
from app.domain.errors import (
    ConflictError,
    IdempotencyKeyMismatchError,
    NotFoundError,
    OverloadedError,
    UnprocessableError,
)
from app.domain.states import NODE_FINISHED, ExecutionStatus, NodeStatus, WorkflowStatus
from app.handlers import registry
from app.models import Execution, NodeExecution, Workflow
from app.repositories import audit, node_counts, node_moves, node_reads, paging
from app.repositories import executions as executions_repo
from app.repositories import workflows as workflows_repo
from app.repositories.audit import LogEntry
from app.services import lifecycle, workflows
from app.services.admission import Admission
from app.services.progress import node_jobs
from app.services.workflows import WorkflowDraft

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TriggerRequest:
    workflow_id: uuid.UUID | None = None
    workflow_name: str | None = None
    input: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    correlation_id: str | None = None
    scheduled_at: datetime | None = None  # start then, not now (a past time starts at once)
    max_retries: int = 0  # automatic retries of the whole execution if it fails
    dry_run: bool = False  # outbound handlers answer with synthetic responses
    start: bool = True  # False: stay PENDING until triggered (the peers' submit, then trigger)
    # Config overrides for this run, by node id: merged over those nodes' configs.
    node_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """SHA-256 of the request's meaning: the same body in any key order hashes the same."""
        body = {
            "workflow_id": str(self.workflow_id) if self.workflow_id else None,
            "workflow_name": self.workflow_name,
            "input_data": self.input,
            "scheduled_at": self.scheduled_at.isoformat() if self.scheduled_at else None,
            "max_retries": self.max_retries,
        }
        # Only when set, so fingerprints stored before these existed still match.
        if self.dry_run:
            body["dry_run"] = True
        if self.node_params:
            body["node_params"] = self.node_params
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ExecutionView:
    execution: Execution
    workflow: Workflow
    created: bool = False
    nodes: list[NodeExecution] | None = None  # a page of them, when asked for
    nodes_next: int | None = None  # the position to page on from, when there are more

    @property
    def progress(self) -> dict[str, Any]:
        """Node counts by status and the percent finished, from the execution row: the same
        cost for ten nodes as for ten thousand."""
        counts = self.execution.node_counts
        total = self.execution.nodes_total
        finished = self.execution.count(NODE_FINISHED)
        return {
            "total": total,
            **{status.value.lower(): counts.get(str(status), 0) for status in NodeStatus},
            "percent": round(100 * finished / total, 1) if total else 100.0,
        }


def trigger(
    session: Session,
    dispatcher: Dispatcher,
    request: TriggerRequest,
    admission: Admission | None = None,
    limits: dag.Limits | None = None,
) -> ExecutionView:
    """Create and start an execution, or return the one this idempotency key already made.

    While the backlog is over admission's limit, new work is refused (503), but a retried
    request is still answered with the execution its key made: the retry is what a
    client does on a timeout, and refusing it would leave the caller not knowing.
    """
    if admission is not None:
        try:
            admission.check()
        except OverloadedError:
            with session.begin():
                replayed = _replay(session, request)
            if replayed is None:
                raise
            return replayed
    with session.begin():
        if request.workflow_id is None and request.idempotency_key:
            # By name, the key covers every version of the name: a retried request must not
            # run again because a new version was activated in between. An advisory lock on
            # (name, key) makes the lookup and the insert that may follow one step.
            executions_repo.lock_name_and_key(session, request.workflow_name or "", request.idempotency_key)
            replayed = _replay(session, request)
            if replayed is not None:
                return replayed
        workflow = _workflow_to_run(session, request)
        if workflow.status != WorkflowStatus.ACTIVE:
            # A replay still answers after the workflow is archived.
            replayed = _replay(session, request)
            if replayed is not None:
                return replayed
            raise ConflictError(
                f"workflow {workflow.name!r} v{workflow.version} is {workflow.status}; only an active workflow runs",
                details={"current_status": workflow.status},
            )
        if request.node_params:
            problems = workflows.override_problems(session, workflow.id, request.node_params, limits or dag.Limits())
            if problems:
                raise UnprocessableError("node_params are not valid for this workflow", problems=problems)
        view, jobs = create(session, dispatcher, workflow, request)
    dispatcher.enqueue(jobs)
    return view


def submit_adhoc(session: Session, draft: WorkflowDraft, limits: dag.Limits, request: TriggerRequest) -> ExecutionView:
    """The peers' submit: store the DAG as an ad-hoc version and a PENDING execution of
    it, in one transaction, checked exactly as a definition is. Started by a trigger."""
    draft = replace(draft, activate=True, adhoc=True)
    nodes = workflows.checked_nodes(draft, limits)
    with session.begin():
        workflow = workflows.store(session, draft, nodes).workflow
        view, _ = create(session, None, workflow, replace(request, workflow_id=workflow.id, start=False))
        return view


def create(
    session: Session, dispatcher: Dispatcher | None, workflow: Workflow, request: TriggerRequest
) -> tuple[ExecutionView, list[NodeJob]]:
    """Insert an execution of `workflow` and its nodes, and start it unless the request
    says otherwise; the jobs to enqueue once the caller's transaction commits.

    One that starts now with unguarded roots (the usual trigger) is made RUNNING with its
    roots QUEUED by the statements that insert them, each step with its audit row; any
    other is made PENDING, and started (or not) as the lifecycle says.
    """
    plan = workflows_repo.start_plan(session, workflow.id)
    scheduled = request.scheduled_at is not None and request.scheduled_at > datetime.now(UTC)
    starts = request.start and dispatcher is not None and not scheduled
    at_once = starts and not plan.guarded_roots
    counts = node_counts.initial(plan.nodes)
    if at_once:
        counts[NodeStatus.PENDING] -= len(plan.roots)
        counts[NodeStatus.QUEUED] += len(plan.roots)
    execution = executions_repo.insert(
        session,
        _execution_row(workflow, request, plan.nodes, counts, ExecutionStatus.RUNNING if at_once else None),
        workflow.timeout_seconds,
        _first_entries(workflow, request, plan, scheduled, at_once),
    )
    if execution is None:  # a twin with the same key committed while we waited on the index
        replayed = _replay(session, request)
        if replayed is None:
            raise ConflictError("the idempotency key is taken by an execution being deleted; retry")
        return replayed, []
    modes = {node_id: registry.mode(handler) for node_id, handler in plan.roots.items()}
    planned = dispatcher.plan(modes) if at_once and dispatcher is not None else {}
    inserted = node_moves.insert_nodes(session, execution.id, workflow.id, queue_roots=at_once, root_jobs=planned)
    metrics.after_commit(session, metrics.EXECUTIONS_STARTED.inc)
    if at_once:
        jobs = node_jobs(inserted, modes)
    elif starts and dispatcher is not None:
        jobs = lifecycle.start(session, dispatcher, execution.id, workflow)
        execution = session.get(Execution, execution.id, populate_existing=True) or execution
    else:
        jobs = []
    return ExecutionView(execution, workflow, created=True), jobs


def _first_entries(
    workflow: Workflow, request: TriggerRequest, plan: workflows_repo.StartPlan, scheduled: bool, at_once: bool
) -> list[LogEntry]:
    """The audit rows of an execution's making (the execution id is the statement's)."""
    made = uuid.UUID(int=0)
    entries = [
        LogEntry(
            made,
            "execution.created",
            f"execution of {workflow.name} v{workflow.version} created",
            details={"idempotency_key": request.idempotency_key, "nodes": plan.nodes, "dry_run": request.dry_run},
        )
    ]
    if scheduled and request.scheduled_at is not None:
        entries.append(
            LogEntry(
                made,
                "execution.scheduled",
                f"execution scheduled to start at {request.scheduled_at.isoformat()}",
                details={"scheduled_at": request.scheduled_at.isoformat()},
            )
        )
    if at_once:
        entries.append(
            LogEntry(
                made,
                "execution.running",
                "execution started" + (" (dry run)" if request.dry_run else ""),
                details={"from": str(ExecutionStatus.PENDING), "to": str(ExecutionStatus.RUNNING)},
            )
        )
    return entries


def _replay(session: Session, request: TriggerRequest) -> ExecutionView | None:
    """The execution this request's idempotency key already made, if any: by workflow id,
    for that version; by name, for any version of the name (the caller holds the lock on
    name and key)."""
    key = request.idempotency_key
    if not key:
        return None
    if request.workflow_id is not None:
        found = executions_repo.by_key(session, request.workflow_id, key)
    else:
        found = executions_repo.by_name_and_key(session, request.workflow_name or "", key)
    if found is None:
        return None
    execution, workflow = found
    if execution.request_fingerprint != request.fingerprint():
        raise IdempotencyKeyMismatchError(
            f"idempotency key {key!r} was already used with a different request body",
            details={"execution_id": str(execution.id)},
        )
    if execution.status == ExecutionStatus.CANCELLED:
        # Cancelling is final: say so rather than hand back a run that will never happen.
        raise ConflictError(
            f"the execution for idempotency key {key!r} was cancelled",
            details={"execution_id": str(execution.id), "current_status": execution.status},
        )
    return ExecutionView(execution, workflow, created=False)


def _execution_row(
    workflow: Workflow,
    request: TriggerRequest,
    node_count: int,
    counts: dict[str, int],
    status: ExecutionStatus | None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "workflow_id": workflow.id,
        "status": status or ExecutionStatus.PENDING,
        "idempotency_key": request.idempotency_key,
        "fingerprint": request.fingerprint() if request.idempotency_key else None,
        "input": request.input,
        "node_params": request.node_params,
        "correlation_id": request.correlation_id,
        "nodes_total": node_count,
        "node_counts": counts,
        "scheduled_at": request.scheduled_at,
        "max_retries": request.max_retries,
        "dry_run": request.dry_run,
    }


def _workflow_to_run(session: Session, request: TriggerRequest) -> Workflow:
    """The version a trigger names (by id, or the latest active by name), share-locked until
    commit so that no run starts after an archive."""
    if request.workflow_id is not None:
        workflow = workflows_repo.for_trigger(session, request.workflow_id)
        if workflow is None:
            raise NotFoundError(f"workflow {request.workflow_id} not found")
        return workflow
    workflow = workflows_repo.active_for_trigger(session, request.workflow_name or "")
    if workflow is None:
        if workflows_repo.latest(session, request.workflow_name or "") is None:
            raise NotFoundError(f"workflow {request.workflow_name!r} not found")
        raise ConflictError(f"workflow {request.workflow_name!r} has no active version; activate one first")
    return workflow


def get_execution(
    session: Session,
    execution_id: uuid.UUID,
    *,
    node_statuses: Sequence[NodeStatus] = (),
    nodes_after: int = -1,
    nodes_limit: int | None = 100,
) -> ExecutionView:
    """An execution with its counts by status and a page of its nodes (in the workflow's
    order, after position `nodes_after`, at most `nodes_limit`: all when None; only in
    `node_statuses` when given)."""
    with session.begin():
        found = executions_repo.get_with_workflow(session, execution_id)
        if found is None:
            raise NotFoundError(f"execution {execution_id} not found")
        execution, workflow = found
        if nodes_limit == 0:
            return ExecutionView(execution, workflow, nodes=[])
        fetch = None if nodes_limit is None else nodes_limit + 1
        rows = node_reads.page(
            session, execution_id, workflow.id, statuses=node_statuses, after_position=nodes_after, limit=fetch
        )
        more = nodes_limit is not None and len(rows) > nodes_limit
        rows = rows[:nodes_limit] if more else rows
        return ExecutionView(
            execution, workflow, nodes=[node for node, _ in rows], nodes_next=rows[-1][1] if more else None
        )


def get_results(session: Session, execution_id: uuid.UUID) -> tuple[ExecutionView, dict[str, Any]]:
    """An execution and the output of each completed node."""
    with session.begin():
        found = executions_repo.get_with_workflow(session, execution_id)
        if found is None:
            raise NotFoundError(f"execution {execution_id} not found")
        return ExecutionView(found[0], found[1]), node_reads.outputs(session, execution_id)


def list_executions(session: Session, **page: Any) -> paging.Page[ExecutionView]:
    """A page of executions, newest first (see executions_repo.page for the filters)."""
    with session.begin():
        found = executions_repo.page(session, **page)
        return paging.Page([ExecutionView(e, w) for e, w in found.items], found.next_key, found.total)


def get_logs(
    session: Session,
    execution_id: uuid.UUID,
    *,
    min_level: str,
    node_id: str | None,
    since: datetime | None,
    after_id: int | None,
    limit: int,
) -> list[Any]:
    """A page of the execution's log, oldest first."""
    with session.begin():
        if session.get(Execution, execution_id) is None:
            raise NotFoundError(f"execution {execution_id} not found")
        return audit.logs(
            session, execution_id, min_level=min_level, node_id=node_id, since=since, after_id=after_id, limit=limit
        )
