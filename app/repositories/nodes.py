"""Node executions: guarded status changes, the worker's claim, and parent-outcome counting.

These run once or more per node, so they are named SQL statements written once
(as procrastinate does) rather than statements built per call: building and
compiling an ORM UPDATE costs about five times what PostgreSQL spends on it.
Each status change and its audit row are one statement (a data-modifying CTE),
so they cannot come apart. Statements that lock several node rows lock them in
id order; a transaction that changes several nodes of an execution first locks
the execution row (executions.lock), so a failure cascade spread over several
statements still takes its locks in one global order.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, String, Uuid, bindparam, func, insert, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session

from app import correlation
from app.domain.states import NodeStatus, node_sources
from app.models import Execution, NodeExecution, WorkflowNode

NE = NodeExecution

_UUIDS = ARRAY(Uuid)
_STRINGS = ARRAY(String)
_JSON_OR_NULL = JSONB(none_as_null=True)  # Python None is SQL NULL here, not JSON null

# The guard: the rows chosen (by id or node id, in a source state, at an
# attempt), locked in id order. Filters given as NULL are ignored.
_CHOSEN = """
    chosen AS (
        SELECT id, status FROM node_executions
        WHERE execution_id = :execution_id
          AND status = ANY(:sources)
          AND (CAST(:ids AS uuid[]) IS NULL OR id = ANY(CAST(:ids AS uuid[])))
          AND (CAST(:node_ids AS varchar[]) IS NULL OR node_id = ANY(CAST(:node_ids AS varchar[])))
          AND (CAST(:attempt AS integer) IS NULL OR attempt = :attempt)
        ORDER BY id
        FOR UPDATE
    )"""

_LOGGED = """
    logged AS (
        INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
        SELECT :execution_id, node_id, :level, :event,
               'node ' || node_id || ': ' || previous || ' -> ' || :target,
               jsonb_build_object('from', previous, 'to', :target, 'attempt', attempt) || CAST(:details AS jsonb),
               :correlation_id
        FROM moved
    )"""


def _move_statement(set_clause: str) -> Any:
    return (
        text(
            f"""
            WITH {_CHOSEN},
            moved AS (
                UPDATE node_executions ne SET status = :target, {set_clause}
                FROM chosen WHERE ne.id = chosen.id
                RETURNING ne.id, ne.node_id, ne.attempt, ne.rq_job_id, chosen.status AS previous
            ),
            {_LOGGED}
            SELECT id, node_id, attempt, rq_job_id, previous FROM moved
            """
        )
        .bindparams(
            bindparam("execution_id", type_=Uuid),
            bindparam("ids", type_=_UUIDS),
            bindparam("node_ids", type_=_STRINGS),
            bindparam("sources", type_=_STRINGS),
            bindparam("attempt", type_=Integer),
            bindparam("details", type_=JSONB),
        )
        .columns(id=Uuid, node_id=String, attempt=Integer, rq_job_id=String, previous=String)
    )


# A new attempt, with its RQ job id: [A-Za-z0-9_-] only, one per attempt, so a
# re-delivered attempt reuses its id and a new attempt never collides with an old one.
_QUEUE = _move_statement(
    """attempt = ne.attempt + 1, queued_at = now(), not_before = NULL,
       rq_job_id = 'node-' || replace(CAST(ne.id AS text), '-', '') || '-' || (ne.attempt + 1)"""
)
_WAIT_FOR_RETRY = _move_statement(
    """not_before = now() + make_interval(secs => :delay_seconds), error = CAST(:error AS jsonb)"""
).bindparams(bindparam("error", type_=JSONB(none_as_null=True)))
_FINISH = _move_statement(
    """finished_at = now(),
       output = CAST(:output AS jsonb),
       error = CAST(:error AS jsonb)"""
).bindparams(bindparam("output", type_=_JSON_OR_NULL), bindparam("error", type_=_JSON_OR_NULL))


@dataclass(frozen=True)
class MovedNode:
    id: uuid.UUID
    node_id: str
    attempt: int
    rq_job_id: str | None
    previous: NodeStatus


def _move(
    session: Session,
    statement: Any,
    execution_id: uuid.UUID,
    target: NodeStatus,
    *,
    ids: Collection[uuid.UUID] | None,
    node_ids: Collection[str] | None,
    expected: Collection[NodeStatus] | None,
    attempt: int | None,
    level: str,
    details: dict[str, Any] | None,
    **params: Any,
) -> list[MovedNode]:
    sources = node_sources(target) if expected is None else frozenset(expected)
    if not sources <= node_sources(target):
        raise ValueError(f"the state table does not allow {sorted(sources)} -> {target}")
    rows = session.execute(
        statement,
        {
            "execution_id": execution_id,
            "target": str(target),
            "sources": [str(s) for s in sources],
            "ids": list(ids) if ids is not None else None,
            "node_ids": list(node_ids) if node_ids is not None else None,
            "attempt": attempt,
            "level": level,
            "event": f"node.{target.lower()}",
            "details": details or {},
            "correlation_id": correlation.correlation_id.get(),
            **params,
        },
    ).all()
    return [MovedNode(r.id, r.node_id, r.attempt, r.rq_job_id, NodeStatus(r.previous)) for r in rows]


def queue(
    session: Session,
    execution_id: uuid.UUID,
    *,
    node_ids: Collection[str] | None = None,
    ids: Collection[uuid.UUID] | None = None,
    expected: Collection[NodeStatus] | None = None,
    details: dict[str, Any] | None = None,
) -> list[MovedNode]:
    """Move the chosen nodes to QUEUED as a new attempt; log each."""
    return _move(
        session,
        _QUEUE,
        execution_id,
        NodeStatus.QUEUED,
        ids=ids,
        node_ids=node_ids,
        expected=expected,
        attempt=None,
        level="info",
        details=details,
    )


def finish(
    session: Session,
    execution_id: uuid.UUID,
    target: NodeStatus,
    *,
    node_ids: Collection[str] | None = None,
    ids: Collection[uuid.UUID] | None = None,
    expected: Collection[NodeStatus] | None = None,
    attempt: int | None = None,
    output: Any = None,
    error: dict[str, Any] | None = None,
    level: str = "info",
    details: dict[str, Any] | None = None,
) -> list[MovedNode]:
    """Move the chosen nodes (in an allowed source state, at `attempt`) to a finished
    status, setting the output or error; log each. Rows that do not match are left
    alone: that is how a lost race, or a stale worker's late result, is a no-op."""
    return _move(
        session,
        _FINISH,
        execution_id,
        target,
        ids=ids,
        node_ids=node_ids,
        expected=expected,
        attempt=attempt,
        level=level,
        details=details,
        output=output,
        error=error,
    )


def wait_for_retry(
    session: Session,
    execution_id: uuid.UUID,
    node_execution_id: uuid.UUID,
    attempt: int,
    delay_seconds: float,
    error: dict[str, Any],
) -> list[MovedNode]:
    """RUNNING -> UP_FOR_RETRY for this attempt: the next one is not queued for `delay_seconds`."""
    return _move(
        session,
        _WAIT_FOR_RETRY,
        execution_id,
        NodeStatus.UP_FOR_RETRY,
        ids=[node_execution_id],
        node_ids=None,
        expected=[NodeStatus.RUNNING],
        attempt=attempt,
        level="warning",
        details={"error": error, "retry_in_seconds": round(delay_seconds, 3), "next_attempt": attempt + 1},
        delay_seconds=delay_seconds,
        error=error,
    )


_DEFER = _move_statement(
    """not_before = now() + make_interval(secs => :delay_seconds),
       wake_at = now() + make_interval(secs => :delay_seconds)"""
)


def defer(
    session: Session, execution_id: uuid.UUID, node_execution_id: uuid.UUID, attempt: int, seconds: float
) -> list[MovedNode]:
    """RUNNING -> DEFERRED for this attempt: it holds no worker until `seconds` have passed."""
    return _move(
        session,
        _DEFER,
        execution_id,
        NodeStatus.DEFERRED,
        ids=[node_execution_id],
        node_ids=None,
        expected=[NodeStatus.RUNNING],
        attempt=attempt,
        level="info",
        details={"wait_seconds": seconds},
        delay_seconds=seconds,
    )


def insert_many(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert node execution rows in one statement."""
    if rows:
        session.execute(insert(NodeExecution), list(rows))


@dataclass(frozen=True)
class ClaimedNode:
    """A node a worker has moved to RUNNING, with all it needs to run it."""

    id: uuid.UUID
    execution_id: uuid.UUID
    workflow_id: uuid.UUID
    node_id: str
    attempt: int
    handler: str
    config: dict[str, Any]
    timeout_seconds: int | None
    dependencies: list[str]
    dependents: list[str]
    input: dict[str, Any]
    correlation_id: str | None
    retry_policy: dict[str, Any] | None
    woke_from: datetime | None  # when a deferred node was to wake, on the run after
    dry_run: bool = False  # its execution is a dry run: outbound handlers do not call out


# The node's definition and its execution's input, as a claim returns them.
_NODE_COLUMNS = """ne.execution_id, e.workflow_id, ne.node_id, wn.handler, wn.config, wn.timeout_seconds,
                   wn.dependencies, wn.dependents, e.input, e.correlation_id, wn.retry_policy, ne.wake_at,
                   e.dry_run"""
_NODE_TYPES = {
    "execution_id": Uuid,
    "workflow_id": Uuid,
    "node_id": String,
    "handler": String,
    "config": JSONB,
    "timeout_seconds": Integer,
    "dependencies": _STRINGS,
    "dependents": _STRINGS,
    "input": JSONB,
    "correlation_id": String,
    "retry_policy": JSONB,
    "wake_at": DateTime(timezone=True),
    "dry_run": Boolean,
}

_CLAIM = (
    text(
        f"""
        WITH claimed AS (
            UPDATE node_executions ne
            SET status = 'RUNNING', started_at = now(), worker_name = :worker
            FROM executions e, workflow_nodes wn
            WHERE ne.id = :id AND ne.status = 'QUEUED' AND ne.attempt = :attempt
              AND e.id = ne.execution_id AND wn.workflow_id = e.workflow_id AND wn.node_id = ne.node_id
            RETURNING {_NODE_COLUMNS}
        ),
        logged AS (
            INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
            SELECT execution_id, node_id, 'info', 'node.running', 'node ' || node_id || ': QUEUED -> RUNNING',
                   jsonb_build_object('from', 'QUEUED', 'to', 'RUNNING', 'attempt', :attempt, 'worker', :worker),
                   :correlation_id
            FROM claimed
        )
        SELECT * FROM claimed
        """
    )
    .bindparams(bindparam("id", type_=Uuid), bindparam("attempt", type_=Integer))
    .columns(**_NODE_TYPES)
)


def claim(session: Session, node_execution_id: uuid.UUID, attempt: int, worker_name: str) -> ClaimedNode | None:
    """QUEUED -> RUNNING for this attempt, logged; None when another delivery got there first."""
    row = session.execute(
        _CLAIM,
        {
            "id": node_execution_id,
            "attempt": attempt,
            "worker": worker_name,
            "correlation_id": correlation.correlation_id.get(),
        },
    ).first()
    if row is None:
        return None
    return ClaimedNode(node_execution_id, row.execution_id, row.workflow_id, row.node_id, attempt, *row[3:])


_RUNNING_NODE = (
    text(
        f"""
        SELECT ne.attempt, {_NODE_COLUMNS}
        FROM node_executions ne
        JOIN executions e ON e.id = ne.execution_id
        JOIN workflow_nodes wn ON wn.workflow_id = e.workflow_id AND wn.node_id = ne.node_id
        WHERE ne.id = :id AND ne.status = 'RUNNING'
        """
    )
    .bindparams(bindparam("id", type_=Uuid))
    .columns(attempt=Integer, **_NODE_TYPES)
)


def running(session: Session, node_execution_id: uuid.UUID) -> ClaimedNode | None:
    """A RUNNING node as its worker claimed it (for recovery when that worker is gone)."""
    row = session.execute(_RUNNING_NODE, {"id": node_execution_id}).first()
    if row is None:
        return None
    return ClaimedNode(node_execution_id, row.execution_id, row.workflow_id, row.node_id, row.attempt, *row[4:])


@dataclass(frozen=True)
class ChildState:
    """A child's counters right after one of its parents finished."""

    id: uuid.UUID
    node_id: str
    status: NodeStatus
    parents: int
    remaining: int
    failed_parents: int
    skipped_parents: int
    timeout_seconds: int | None
    trigger_rule: str = "all_success"
    guard: str | None = None


_COUNT_PARENT = (
    text(
        """
        WITH locked AS (
            SELECT id FROM node_executions
            WHERE execution_id = :execution_id AND node_id = ANY(CAST(:children AS varchar[]))
            ORDER BY id
            FOR UPDATE
        )
        UPDATE node_executions ne
        SET remaining_deps = ne.remaining_deps - 1,
            failed_parents = ne.failed_parents + :failed,
            skipped_parents = ne.skipped_parents + :skipped
        FROM locked, workflow_nodes wn
        WHERE ne.id = locked.id AND wn.workflow_id = :workflow_id AND wn.node_id = ne.node_id
        RETURNING ne.id, ne.node_id, ne.status, cardinality(wn.dependencies) AS parents, ne.remaining_deps,
                  ne.failed_parents, ne.skipped_parents, wn.timeout_seconds, wn.trigger_rule, wn.guard
        """
    )
    .bindparams(
        bindparam("execution_id", type_=Uuid),
        bindparam("workflow_id", type_=Uuid),
        bindparam("children", type_=_STRINGS),
    )
    .columns(id=Uuid, node_id=String, status=String)
)


def count_parent_outcome(
    session: Session,
    execution_id: uuid.UUID,
    workflow_id: uuid.UUID,
    children: Sequence[str],
    *,
    failed: bool = False,
    skipped: bool = False,
) -> list[ChildState]:
    """One parent finished: count it off each child, in one statement (O(out-degree)).

    Row locks serialise concurrent parents, so exactly one of them sees a
    child's count reach zero.
    """
    if not children:
        return []
    rows = session.execute(
        _COUNT_PARENT,
        {
            "execution_id": execution_id,
            "workflow_id": workflow_id,
            "children": list(children),
            "failed": int(failed),
            "skipped": int(skipped),
        },
    ).all()
    return [ChildState(r[0], r[1], NodeStatus(r[2]), *r[3:]) for r in rows]


def of_execution(session: Session, execution_id: uuid.UUID) -> list[NodeExecution]:
    """The execution's nodes, in the workflow's node order."""
    workflow_id = select(Execution.workflow_id).where(Execution.id == execution_id).scalar_subquery()
    return list(
        session.scalars(
            select(NE)
            .join(WorkflowNode, (WorkflowNode.node_id == NE.node_id) & (WorkflowNode.workflow_id == workflow_id))
            .where(NE.execution_id == execution_id)
            .order_by(WorkflowNode.position)
        )
    )


def outputs(session: Session, execution_id: uuid.UUID) -> dict[str, Any]:
    """Node id -> output, for every completed node (templates and guards read theirs
    through outputs_by_handler, which knows the output aliases)."""
    query = select(NE.node_id, NE.output).where(NE.execution_id == execution_id, NE.status == NodeStatus.COMPLETED)
    return {node_id: output for node_id, output in session.execute(query)}


def outputs_by_handler(
    session: Session, execution_id: uuid.UUID, node_ids: Collection[str]
) -> dict[str, tuple[str, Any]]:
    """Node id -> (its handler, its output), for the named completed nodes."""
    query = (
        select(NE.node_id, WorkflowNode.handler, NE.output)
        .join(Execution, Execution.id == NE.execution_id)
        .join(WorkflowNode, (WorkflowNode.workflow_id == Execution.workflow_id) & (WorkflowNode.node_id == NE.node_id))
        .where(NE.execution_id == execution_id, NE.status == NodeStatus.COMPLETED, NE.node_id.in_(node_ids))
    )
    return {node_id: (handler, output) for node_id, handler, output in session.execute(query)}


_RESET = (
    text(
        """
        WITH reset_ids AS (
            SELECT unnest(CAST(:node_ids AS varchar[])) AS node_id
        ),
        chosen AS (
            SELECT ne.id, ne.status FROM node_executions ne
            WHERE ne.execution_id = :execution_id AND ne.node_id IN (SELECT node_id FROM reset_ids)
              AND ne.status = ANY(:sources)
            ORDER BY ne.id
            FOR UPDATE
        ),
        counts AS (
            -- A reset node's parents as they stand: reset ones and unfinished ones are
            -- still to come; the others ended as they ended.
            SELECT ne.id,
                   count(p.id) FILTER (
                       WHERE p.node_id IN (SELECT node_id FROM reset_ids)
                          OR p.status IN ('PENDING', 'QUEUED', 'RUNNING', 'UP_FOR_RETRY', 'DEFERRED')
                   ) AS remaining,
                   count(p.id) FILTER (
                       WHERE p.node_id NOT IN (SELECT node_id FROM reset_ids)
                         AND p.status IN ('FAILED', 'UPSTREAM_FAILED', 'CANCELLED')
                   ) AS failed,
                   count(p.id) FILTER (
                       WHERE p.node_id NOT IN (SELECT node_id FROM reset_ids) AND p.status = 'SKIPPED'
                   ) AS skipped
            FROM node_executions ne
            JOIN chosen ON chosen.id = ne.id
            JOIN workflow_nodes wn ON wn.workflow_id = :workflow_id AND wn.node_id = ne.node_id
            LEFT JOIN LATERAL unnest(wn.dependencies) AS dep(node_id) ON true
            LEFT JOIN node_executions p ON p.execution_id = ne.execution_id AND p.node_id = dep.node_id
            GROUP BY ne.id
        ),
        moved AS (
            UPDATE node_executions ne
            SET status = 'PENDING', remaining_deps = counts.remaining, failed_parents = counts.failed,
                skipped_parents = counts.skipped, output = NULL, error = NULL, queued_at = NULL,
                started_at = NULL, finished_at = NULL, not_before = NULL, wake_at = NULL, worker_name = NULL
            FROM counts, chosen
            WHERE ne.id = counts.id AND chosen.id = ne.id
            RETURNING ne.id, ne.node_id, ne.attempt, ne.rq_job_id, chosen.status AS previous,
                      ne.remaining_deps, ne.failed_parents, ne.skipped_parents
        ),
        logged AS (
            INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
            SELECT :execution_id, node_id, 'info', 'node.pending',
                   'node ' || node_id || ': ' || previous || ' -> PENDING (retry)',
                   jsonb_build_object('from', previous, 'to', 'PENDING', 'attempt', attempt) || CAST(:details AS jsonb),
                   :correlation_id
            FROM moved
        )
        SELECT moved.id, moved.node_id, moved.previous, cardinality(wn.dependencies) AS parents,
               moved.remaining_deps, moved.failed_parents, moved.skipped_parents, wn.timeout_seconds,
               wn.trigger_rule, wn.guard
        FROM moved JOIN workflow_nodes wn ON wn.workflow_id = :workflow_id AND wn.node_id = moved.node_id
        """
    )
    .bindparams(
        bindparam("execution_id", type_=Uuid),
        bindparam("workflow_id", type_=Uuid),
        bindparam("sources", type_=_STRINGS),
        bindparam("node_ids", type_=_STRINGS),
        bindparam("details", type_=JSONB),
    )
    .columns(id=Uuid, node_id=String, previous=String)
)


def reset(
    session: Session,
    execution_id: uuid.UUID,
    workflow_id: uuid.UUID,
    node_ids: Collection[str],
    details: dict[str, Any] | None = None,
) -> list[ChildState]:
    """Put the named failed, upstream-failed or cancelled nodes back to PENDING, their
    parent counters recomputed from how their parents stand now; log each. Returns
    their states, so the caller can queue the ones with nothing left to wait for."""
    if not node_ids:
        return []
    sources = [str(s) for s in node_sources(NodeStatus.PENDING)]
    rows = session.execute(
        _RESET,
        {
            "execution_id": execution_id,
            "workflow_id": workflow_id,
            "sources": sources,
            "node_ids": list(node_ids),
            "details": details or {},
            "correlation_id": correlation.correlation_id.get(),
        },
    ).all()
    return [ChildState(r.id, r.node_id, NodeStatus.PENDING, *r[3:]) for r in rows]


def ids_with_status(session: Session, execution_id: uuid.UUID, statuses: Collection[NodeStatus]) -> list[str]:
    """Node ids of the execution in any of these states."""
    return list(
        session.scalars(
            select(NE.node_id).where(NE.execution_id == execution_id, NE.status.in_([str(s) for s in statuses]))
        )
    )


def root_states(session: Session, execution_id: uuid.UUID, workflow_id: uuid.UUID) -> list[ChildState]:
    """PENDING nodes with no parent to wait for, as ChildStates (an execution's start)."""
    rows = session.execute(
        select(
            NE.id,
            NE.node_id,
            NE.status,
            func.cardinality(WorkflowNode.dependencies),
            NE.remaining_deps,
            NE.failed_parents,
            NE.skipped_parents,
            WorkflowNode.timeout_seconds,
            WorkflowNode.trigger_rule,
            WorkflowNode.guard,
        )
        .join(WorkflowNode, (WorkflowNode.workflow_id == workflow_id) & (WorkflowNode.node_id == NE.node_id))
        .where(NE.execution_id == execution_id, NE.status == NodeStatus.PENDING, NE.remaining_deps == 0)
    )
    return [ChildState(r[0], r[1], NodeStatus(r[2]), *r[3:]) for r in rows]


@dataclass(frozen=True)
class WaitingNode:
    execution_id: uuid.UUID
    id: uuid.UUID
    node_id: str
    attempt: int
    rq_job_id: str | None
    timeout_seconds: int | None
    queued_at: datetime | None


_WAITING_COLUMNS = (
    NE.execution_id,
    NE.id,
    NE.node_id,
    NE.attempt,
    NE.rq_job_id,
    WorkflowNode.timeout_seconds,
    NE.queued_at,
)


def _waiting(session: Session, *conditions: Any, order: Any, limit: int) -> list[WaitingNode]:
    rows = session.execute(
        select(*_WAITING_COLUMNS)
        .join(Execution, Execution.id == NE.execution_id)
        .join(
            WorkflowNode,
            (WorkflowNode.workflow_id == Execution.workflow_id) & (WorkflowNode.node_id == NE.node_id),
        )
        .where(*conditions)
        .order_by(*(order if isinstance(order, tuple) else (order,)))
        .limit(limit)
    )
    return [WaitingNode(*row) for row in rows]


def due_wakeups(session: Session, limit: int) -> list[WaitingNode]:
    """UP_FOR_RETRY and DEFERRED nodes whose wait is over, longest-waiting first."""
    return _waiting(
        session,
        NE.status.in_([NodeStatus.UP_FOR_RETRY, NodeStatus.DEFERRED]),
        NE.not_before <= func.now(),
        order=NE.not_before,
        limit=limit,
    )


def queued_before(session: Session, seconds: float, limit: int, after: tuple[datetime, uuid.UUID]) -> list[WaitingNode]:
    """QUEUED nodes queued more than `seconds` ago (their RQ job may be lost), after the
    keyset `after`, so a long backlog is looked through a page per tick."""
    return _waiting(
        session,
        NE.status == NodeStatus.QUEUED,
        NE.queued_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds),
        tuple_(NE.queued_at, NE.id) > tuple_(after[0], after[1]),
        order=(NE.queued_at, NE.id),
        limit=limit,
    )


@dataclass(frozen=True)
class RunningNode:
    """A node RUNNING for a while, and what its worker last said in PostgreSQL."""

    execution_id: uuid.UUID
    id: uuid.UUID
    rq_job_id: str | None
    started_at: datetime
    worker_alive: bool  # a heartbeat row, and fresh
    tracks_current: bool
    worker_runs_it: bool


_RUNNING_SINCE = text(
    """
    SELECT ne.execution_id, ne.id, ne.rq_job_id, ne.started_at,
           (w.name IS NOT NULL AND w.heartbeat_at >= now() - make_interval(secs => :seconds)) AS worker_alive,
           COALESCE(w.tracks_current, false) AS tracks_current,
           (w.current_node_execution_id IS NOT DISTINCT FROM ne.id) AS worker_runs_it
    FROM node_executions ne
    LEFT JOIN workers w ON w.name = ne.worker_name
    WHERE ne.status = 'RUNNING'
      AND ne.started_at < now() - make_interval(secs => :seconds)
      AND (ne.started_at, ne.id) > (:after_started, :after_id)
    ORDER BY ne.started_at, ne.id
    LIMIT :limit
    """
).bindparams(bindparam("after_started", type_=DateTime(timezone=True)), bindparam("after_id", type_=Uuid))


def running_since(session: Session, seconds: float, limit: int, after: tuple[datetime, uuid.UUID]) -> list[RunningNode]:
    """RUNNING nodes started more than `seconds` ago, after the keyset `after`, with their
    workers' state: the candidates for having been lost."""
    rows = session.execute(
        _RUNNING_SINCE, {"seconds": seconds, "limit": limit, "after_started": after[0], "after_id": after[1]}
    )
    return [RunningNode(*row) for row in rows]


def live_workers(session: Session, seconds: float) -> set[str]:
    """Names of the workers that reported in the last `seconds`."""
    rows = session.execute(
        text("SELECT name FROM workers WHERE heartbeat_at >= now() - make_interval(secs => :seconds)"),
        {"seconds": seconds},
    )
    return {row[0] for row in rows}


_TOUCH_QUEUED = text(
    """
        WITH touched AS (
            UPDATE node_executions SET queued_at = now()
            WHERE id = :id AND status = 'QUEUED' AND attempt = :attempt
            RETURNING execution_id, node_id, attempt
        ),
        logged AS (
            INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
            SELECT execution_id, node_id, 'warning', 'node.requeued',
                   'node ' || node_id || ': its RQ job was lost; enqueued again',
                   jsonb_build_object('attempt', attempt, 'reason', :reason), :correlation_id
            FROM touched
        )
        SELECT count(*) FROM touched
        """
).bindparams(bindparam("id", type_=Uuid), bindparam("attempt", type_=Integer))


def touch_queued(session: Session, node_execution_id: uuid.UUID, attempt: int, reason: str) -> bool:
    """A QUEUED attempt whose job is being enqueued again: restart its grace period, log it."""
    params = {
        "id": node_execution_id,
        "attempt": attempt,
        "reason": reason,
        "correlation_id": correlation.correlation_id.get(),
    }
    return bool(session.scalar(_TOUCH_QUEUED, params))
