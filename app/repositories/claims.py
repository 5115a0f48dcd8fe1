"""A worker's claim on nodes: QUEUED -> RUNNING, with all it needs to run them.

A claim is one statement for a whole batch: the rows are locked in id order and
only those still QUEUED at the attempt the job carries move, so a duplicate
delivery claims nothing. A worker continuing into children it has just readied
moves them PENDING -> QUEUED -> RUNNING in one statement, with an audit row for
each step.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app import correlation
from app.domain.states import NodeStatus
from app.repositories import node_counts
from app.repositories.prepared import Prepared


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
    elapsed: float = 0.0  # seconds since this attempt started (before a wait it woke from)


# The node's definition (its config with the trigger's overrides over it) and its
# execution's input, as a claim returns them.
_CLAIMED_COLUMNS = """c.id, c.execution_id, e.workflow_id, c.node_id, c.attempt, wn.handler,
                   CASE WHEN e.node_params IS NULL THEN wn.config
                        ELSE wn.config || COALESCE(e.node_params -> c.node_id, '{}') END AS config,
                   wn.timeout_seconds, wn.dependencies, wn.dependents, e.input, e.correlation_id,
                   wn.retry_policy, c.wake_at, e.dry_run, c.elapsed"""
# The time an attempt spent before this run: its planned wait, for a node woken from one
# (the scheduler waking it late is not the node's time).
_ELAPSED = """CASE WHEN ne.wake_at IS NULL THEN 0.0
                   ELSE EXTRACT(EPOCH FROM ne.wake_at - ne.started_at) END AS elapsed"""
# Both keys of workflow_nodes' primary key, so each node is one index probe.
_WITH_DEFINITIONS = """
    FROM claimed c
    JOIN executions e ON e.id = c.execution_id
    JOIN workflow_nodes wn ON (wn.workflow_id, wn.node_id) = (e.workflow_id, c.node_id)
"""


def _claimed(rows: Sequence[Any]) -> list[ClaimedNode]:
    return [
        ClaimedNode(
            id=r.id,
            execution_id=r.execution_id,
            workflow_id=r.workflow_id,
            node_id=r.node_id,
            attempt=r.attempt,
            handler=r.handler,
            config=r.config,
            timeout_seconds=r.timeout_seconds,
            dependencies=list(r.dependencies),
            dependents=list(r.dependents),
            input=r.input,
            correlation_id=r.correlation_id,
            retry_policy=r.retry_policy,
            woke_from=r.wake_at,
            dry_run=r.dry_run,
            elapsed=float(r.elapsed or 0.0),
        )
        for r in rows
    ]


def _note(session: Session, claimed: Sequence[ClaimedNode], previous: NodeStatus) -> None:
    by_execution: dict[uuid.UUID, int] = {}
    for node in claimed:
        by_execution[node.execution_id] = by_execution.get(node.execution_id, 0) + 1
    for execution_id, count in by_execution.items():
        node_counts.note(session, execution_id, [(previous, NodeStatus.RUNNING)] * count)


# The executions first (the global lock order), then the nodes in id order.
_LOCK_EXECUTIONS = Prepared(
    "lock_claimed_executions",
    """
    SELECT e.id FROM executions e
    WHERE e.id IN (SELECT ne.execution_id FROM unnest(:ids) AS w(id) JOIN node_executions ne ON ne.id = w.id)
    ORDER BY e.id
    FOR NO KEY UPDATE OF e
    """,
    [("ids", "uuid[]")],
)

_CLAIM = Prepared(
    "claim",
    f"""
        WITH wanted AS (
            SELECT * FROM unnest(:ids, :attempts) AS w(id, attempt)
        ),
        chosen AS (
            SELECT ne.id FROM node_executions ne JOIN wanted ON wanted.id = ne.id AND wanted.attempt = ne.attempt
            WHERE ne.status = 'QUEUED'
            ORDER BY ne.id
            FOR UPDATE OF ne
        ),
        claimed AS (
            -- A node woken from a wait (wake_at) goes on with the attempt it started: its
            -- start, and so its timeout, count from then.
            UPDATE node_executions ne
            SET status = 'RUNNING', worker_name = :worker,
                started_at = CASE WHEN ne.wake_at IS NULL THEN clock_timestamp() ELSE ne.started_at END
            FROM chosen WHERE ne.id = chosen.id
            RETURNING ne.id, ne.execution_id, ne.node_id, ne.attempt, ne.wake_at, {_ELAPSED}
        ),
        logged AS (
            INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
            SELECT c.execution_id, c.node_id, 'info', 'node.running', 'node ' || c.node_id || ': QUEUED -> RUNNING',
                   jsonb_build_object('from', 'QUEUED', 'to', 'RUNNING', 'attempt', c.attempt, 'worker', :worker),
                   COALESCE(:correlation_id, e.correlation_id)
            FROM claimed c JOIN executions e ON e.id = c.execution_id
            ORDER BY c.id
        ),
        -- The executions' counts, in this statement rather than at commit: their rows are
        -- locked already (the statement before), and a claim is on every node's path.
        counted AS (
            UPDATE executions e
            SET node_counts = e.node_counts || jsonb_build_object(
                    'QUEUED', COALESCE(CAST(e.node_counts->>'QUEUED' AS integer), 0) - per.n,
                    'RUNNING', COALESCE(CAST(e.node_counts->>'RUNNING' AS integer), 0) + per.n),
                updated_at = now()
            FROM (SELECT execution_id, count(*) AS n FROM claimed GROUP BY execution_id) per
            WHERE e.id = per.execution_id
        )
        SELECT {_CLAIMED_COLUMNS} {_WITH_DEFINITIONS}
        """,
    [("ids", "uuid[]"), ("attempts", "integer[]"), ("worker", "text"), ("correlation_id", "text")],
)


def claim(session: Session, wanted: Sequence[tuple[uuid.UUID, int]], worker_name: str) -> list[ClaimedNode]:
    """QUEUED -> RUNNING for each (node, attempt) still QUEUED at that attempt, logged;
    the others (claimed by another delivery, cancelled, re-queued) are left alone."""
    if not wanted:
        return []
    ids = [node_id for node_id, _ in wanted]
    _LOCK_EXECUTIONS.execute(session, {"ids": ids})
    rows = _CLAIM.execute(
        session,
        {
            "ids": ids,
            "attempts": [attempt for _, attempt in wanted],
            "worker": worker_name,
            "correlation_id": correlation.correlation_id.get(),
        },
    ).all()
    return _claimed(rows)


_QUEUE_AND_CLAIM = Prepared(
    "queue_and_claim",
    f"""
        WITH chosen AS (
            SELECT ne.id FROM unnest(:node_ids) AS w(node_id)
            JOIN node_executions ne ON ne.execution_id = :execution_id AND ne.node_id = w.node_id
            WHERE ne.status = 'PENDING'
            ORDER BY ne.id
            FOR UPDATE OF ne
        ),
        claimed AS (
            UPDATE node_executions ne
            SET status = 'RUNNING', attempt = ne.attempt + 1, queued_at = clock_timestamp(),
                started_at = clock_timestamp(), not_before = NULL, worker_name = :worker, rq_job_id = :job_id
            FROM chosen WHERE ne.id = chosen.id
            RETURNING ne.id, ne.execution_id, ne.node_id, ne.attempt, ne.wake_at, 0.0 AS elapsed
        ),
        logged AS (
            INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
            SELECT c.execution_id, c.node_id, 'info', step.event,
                   'node ' || c.node_id || ': ' || step.source || ' -> ' || step.target,
                   jsonb_build_object('from', step.source, 'to', step.target, 'attempt', c.attempt)
                       || step.details,
                   :correlation_id
            FROM claimed c,
                 (VALUES (1, 'node.queued', 'PENDING', 'QUEUED', '{{}}'::jsonb),
                         (2, 'node.running', 'QUEUED', 'RUNNING', jsonb_build_object('worker', :worker)))
                 AS step(n, event, source, target, details)
            ORDER BY c.id, step.n
        )
        SELECT {_CLAIMED_COLUMNS} {_WITH_DEFINITIONS}
        """,
    [
        ("execution_id", "uuid"),
        ("node_ids", "text[]"),
        ("worker", "text"),
        ("job_id", "text"),
        ("correlation_id", "text"),
    ],
)


def queue_and_claim(
    session: Session, execution_id: uuid.UUID, node_ids: Collection[str], worker_name: str, job_id: str | None
) -> list[ClaimedNode]:
    """PENDING -> QUEUED -> RUNNING for the named nodes, in one statement with an audit row
    per step: children the worker that readied them runs itself. The caller holds the
    execution's lock."""
    if not node_ids:
        return []
    rows = _QUEUE_AND_CLAIM.execute(
        session,
        {
            "execution_id": execution_id,
            "node_ids": list(node_ids),
            "worker": worker_name,
            "job_id": job_id,
            "correlation_id": correlation.correlation_id.get(),
        },
    ).all()
    claimed = _claimed(rows)
    _note(session, claimed, NodeStatus.PENDING)
    return claimed


_RUNNING = Prepared(
    "running",
    f"""
        WITH claimed AS (
            SELECT ne.id, ne.execution_id, ne.node_id, ne.attempt, ne.wake_at, ne.status, {_ELAPSED}
            FROM node_executions ne WHERE ne.id = :id
        )
        SELECT {_CLAIMED_COLUMNS}, c.status {_WITH_DEFINITIONS}
        """,
    [("id", "uuid")],
)


def running(session: Session, node_execution_id: uuid.UUID, attempt: int) -> ClaimedNode | None:
    """A node RUNNING at `attempt`, as its worker claimed it (for recovery when that worker
    is gone); None if it is not (any more). Found by its key alone, then checked: a status
    in the lookup would let the plan scan every RUNNING node."""
    rows = [r for r in _RUNNING.execute(session, {"id": node_execution_id}) if r.status == NodeStatus.RUNNING]
    found = [node for node in _claimed(rows) if node.attempt == attempt]
    return found[0] if found else None
