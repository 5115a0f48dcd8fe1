"""The scheduler's work lists: nodes waiting on time, and nodes whose job or worker may be lost.

Each reads a small partial index (only the rows in that state) and pages with a
keyset, so a long backlog is looked through a page at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Integer, String, Uuid, bindparam, func, literal, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app import correlation
from app.domain.states import NODE_WAITING, NodeStatus
from app.models import Execution, NodeExecution, WorkflowNode

NE = NodeExecution


@dataclass(frozen=True)
class WaitingNode:
    execution_id: uuid.UUID
    id: uuid.UUID
    node_id: str
    attempt: int
    rq_job_id: str | None
    handler: str
    queued_at: datetime | None


def _waiting(session: Session, *conditions: Any, order: Any, limit: int) -> list[WaitingNode]:
    rows = session.execute(
        select(NE.execution_id, NE.id, NE.node_id, NE.attempt, NE.rq_job_id, WorkflowNode.handler, NE.queued_at)
        .join(Execution, Execution.id == NE.execution_id)
        .join(
            WorkflowNode,
            (WorkflowNode.workflow_id == Execution.workflow_id) & (WorkflowNode.node_id == NE.node_id),
        )
        .where(*conditions)
        .order_by(*(order if isinstance(order, tuple) else (order,)))
        .limit(limit)
    )
    return [WaitingNode(r.execution_id, r.id, r.node_id, r.attempt, r.rq_job_id, r.handler, r.queued_at) for r in rows]


def due_wakeups(session: Session, limit: int) -> list[WaitingNode]:
    """UP_FOR_RETRY and DEFERRED nodes whose wait is over, longest-waiting first."""
    return _waiting(
        session,
        NE.status.in_([str(s) for s in NODE_WAITING]),
        NE.not_before <= func.now(),
        order=NE.not_before,
        limit=limit,
    )


def queued_between(
    session: Session, after: tuple[datetime, uuid.UUID], older_than_seconds: float | None, limit: int
) -> list[WaitingNode]:
    """QUEUED nodes after the keyset `after` (queued_at, id), queued more than
    `older_than_seconds` ago when given; in keyset order."""
    conditions = [
        NE.status == NodeStatus.QUEUED,
        tuple_(NE.queued_at, NE.id) > tuple_(literal(after[0]), literal(after[1])),
    ]
    if older_than_seconds is not None:
        conditions.append(NE.queued_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, older_than_seconds))
    return _waiting(session, *conditions, order=(NE.queued_at, NE.id), limit=limit)


@dataclass(frozen=True)
class RunningNode:
    """A node RUNNING for a while, and what its worker last said in PostgreSQL."""

    execution_id: uuid.UUID
    id: uuid.UUID
    attempt: int
    rq_job_id: str | None
    started_at: datetime
    worker_alive: bool  # a heartbeat row, and fresh
    tracks_current: bool
    worker_holds_it: bool


_RUNNING_SINCE = (
    text(
        """
        SELECT ne.execution_id, ne.id, ne.attempt, ne.rq_job_id, ne.started_at,
               (w.name IS NOT NULL AND w.heartbeat_at >= now() - make_interval(secs => :seconds)) AS worker_alive,
               COALESCE(w.tracks_current, false) AS tracks_current,
               COALESCE(ne.id = ANY(w.running), false) AS worker_holds_it
        FROM node_executions ne
        LEFT JOIN workers w ON w.name = ne.worker_name
        WHERE ne.status = 'RUNNING'
          AND ne.started_at < now() - make_interval(secs => :seconds)
          AND (ne.started_at, ne.id) > (:after_started, :after_id)
        ORDER BY ne.started_at, ne.id
        LIMIT :limit
        """
    )
    .bindparams(bindparam("after_started", type_=DateTime(timezone=True)), bindparam("after_id", type_=Uuid))
    .columns(execution_id=Uuid, id=Uuid, attempt=Integer, rq_job_id=String, started_at=DateTime(timezone=True))
)


def running_since(session: Session, seconds: float, limit: int, after: tuple[datetime, uuid.UUID]) -> list[RunningNode]:
    """RUNNING nodes started more than `seconds` ago, after the keyset `after`, with their
    workers' state: the candidates for having been lost."""
    rows = session.execute(
        _RUNNING_SINCE, {"seconds": seconds, "limit": limit, "after_started": after[0], "after_id": after[1]}
    )
    return [
        RunningNode(
            r.execution_id,
            r.id,
            r.attempt,
            r.rq_job_id,
            r.started_at,
            r.worker_alive,
            r.tracks_current,
            r.worker_holds_it,
        )
        for r in rows
    ]


def live_workers(session: Session, seconds: float) -> set[str]:
    """Names of the workers that reported in the last `seconds`."""
    rows = session.execute(
        text("SELECT name FROM workers WHERE heartbeat_at >= now() - make_interval(secs => :seconds)"),
        {"seconds": seconds},
    )
    return {row[0] for row in rows}


_LOCK_EXECUTIONS = text(
    """
    SELECT e.id FROM executions e
    WHERE e.id IN (SELECT ne.execution_id FROM unnest(CAST(:ids AS uuid[])) AS w(id) JOIN node_executions ne
                   ON ne.id = w.id)
    ORDER BY e.id
    FOR NO KEY UPDATE OF e
    """
).bindparams(bindparam("ids", type_=ARRAY(Uuid)))

_TOUCH_QUEUED = (
    text(
        """
        WITH chosen AS (
            SELECT ne.id FROM unnest(CAST(:ids AS uuid[]), CAST(:attempts AS integer[])) AS g(id, attempt)
            JOIN node_executions ne ON ne.id = g.id AND ne.attempt = g.attempt
            WHERE ne.status = 'QUEUED'
            ORDER BY ne.id
            FOR UPDATE OF ne
        ),
        touched AS (
            UPDATE node_executions ne SET queued_at = clock_timestamp()
            FROM chosen WHERE ne.id = chosen.id
            RETURNING ne.id, ne.execution_id, ne.node_id, ne.attempt
        ),
        logged AS (
            INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
            SELECT execution_id, node_id, 'warning', 'node.requeued',
                   'node ' || node_id || ': its RQ job was lost; enqueued again',
                   jsonb_build_object('attempt', attempt, 'reason', :reason), :correlation_id
            FROM touched
        )
        SELECT id FROM touched
        """
    )
    .bindparams(bindparam("ids", type_=ARRAY(Uuid)), bindparam("attempts", type_=ARRAY(Integer)))
    .columns(id=Uuid)
)


def touch_queued(session: Session, nodes: Sequence[tuple[uuid.UUID, int]], reason: str) -> set[uuid.UUID]:
    """QUEUED attempts whose job is being enqueued again: restart their grace period, log
    each; the ids of those still QUEUED at that attempt."""
    if not nodes:
        return set()
    # The global lock order: their executions first, then the nodes (in id order, above).
    session.execute(_LOCK_EXECUTIONS, {"ids": [node_id for node_id, _ in nodes]})
    params = {
        "ids": [node_id for node_id, _ in nodes],
        "attempts": [attempt for _, attempt in nodes],
        "reason": reason,
        "correlation_id": correlation.correlation_id.get(),
    }
    return set(session.scalars(_TOUCH_QUEUED, params))
