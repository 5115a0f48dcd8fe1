"""Guarded status changes of node executions, and the parent counts that decide them.

These run once or more per node, so they are named SQL statements prepared once per
connection (repositories/prepared.py) rather than statements built per call. Each
status change and its audit rows are one statement (a data-modifying CTE), so they
cannot come apart, and each notes its moves for the execution's counts
(`node_counts`). Statements lock the node rows they change in id order; the caller
holds the execution's row lock first (executions.lock), so changes spread over
several statements still take their locks in one global order.

Prepared statements run on generic plans, which guess that an array holds a few
elements. So a statement given a list is driven by the list (`unnest`) and finds each
row by an index: a fan-out's ten thousand children cost ten thousand index probes,
never ten thousand scans of the list.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app import correlation
from app.domain.states import NODE_PARENT_FAILED, NODE_UNFINISHED, NodeStatus, node_sources, values
from app.repositories import node_counts
from app.repositories.prepared import Prepared

# The guard: the rows named (by id or node id; every node of the execution when neither
# is given) that are in a source state (and at `attempt`, if given), locked in id order.
_CHOSEN = """
    named AS (
        SELECT ne.id FROM node_executions ne
        WHERE CAST(:ids AS uuid[]) IS NULL AND CAST(:node_ids AS text[]) IS NULL AND ne.execution_id = :execution_id
        UNION ALL
        SELECT ne.id FROM unnest(CAST(:node_ids AS text[])) AS w(node_id)
        JOIN node_executions ne ON ne.execution_id = :execution_id AND ne.node_id = w.node_id
        UNION ALL
        SELECT ne.id FROM unnest(CAST(:ids AS uuid[])) AS w(id)
        JOIN node_executions ne ON ne.id = w.id AND ne.execution_id = :execution_id
    ),
    chosen AS (
        SELECT ne.id, ne.status FROM named JOIN node_executions ne ON ne.id = named.id
        WHERE ne.status = ANY(:sources) AND (:attempt IS NULL OR ne.attempt = :attempt)
        ORDER BY ne.id
        FOR UPDATE OF ne
    )"""

_LOGGED = """
    logged AS (
        INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
        SELECT :execution_id, node_id, :level, :event,
               'node ' || node_id || ': ' || previous || ' -> ' || :target,
               jsonb_build_object('from', previous, 'to', :target, 'attempt', attempt) || :details,
               :correlation_id
        FROM moved
        ORDER BY id
    )"""

_MOVED_COLUMNS = "ne.id, ne.node_id, ne.attempt, ne.rq_job_id, ne.worker_name, chosen.status AS previous"

_FINISH = Prepared(
    "finish",
    f"""
    WITH {_CHOSEN},
    moved AS (
        UPDATE node_executions ne SET status = :target, finished_at = clock_timestamp(), output = :output,
                                      error = :error
        FROM chosen WHERE ne.id = chosen.id
        RETURNING {_MOVED_COLUMNS}
    ),
    {_LOGGED}
    SELECT id, node_id, attempt, rq_job_id, worker_name, previous FROM moved
    """,
    [
        ("execution_id", "uuid"),
        ("target", "text"),
        ("sources", "text[]"),
        ("ids", "uuid[]"),
        ("node_ids", "text[]"),
        ("attempt", "integer"),
        ("level", "text"),
        ("event", "text"),
        ("details", "jsonb"),
        ("correlation_id", "text"),
        ("output", "jsonb"),
        ("error", "jsonb"),
    ],
)


@dataclass(frozen=True)
class MovedNode:
    id: uuid.UUID
    node_id: str
    attempt: int
    rq_job_id: str | None
    worker_name: str | None
    previous: NodeStatus


def _sources(target: NodeStatus, expected: Collection[NodeStatus] | None) -> list[str]:
    sources = node_sources(target) if expected is None else frozenset(expected)
    if not sources <= node_sources(target):
        raise ValueError(f"the state table does not allow {sorted(sources)} -> {target}")
    return sorted(str(s) for s in sources)


def _moved(session: Session, execution_id: uuid.UUID, target: NodeStatus, rows: Sequence[Any]) -> list[MovedNode]:
    moved = [MovedNode(r.id, r.node_id, r.attempt, r.rq_job_id, r.worker_name, NodeStatus(r.previous)) for r in rows]
    node_counts.note(session, execution_id, ((m.previous, target) for m in moved))
    return moved


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


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
    status, all with the same output or error; log each. Rows that do not match are left
    alone: that is how a lost race, or a stale worker's late result, is a no-op."""
    rows = _FINISH.execute(
        session,
        {
            "execution_id": execution_id,
            "target": str(target),
            "sources": _sources(target, expected),
            "ids": list(ids) if ids is not None else None,
            "node_ids": list(node_ids) if node_ids is not None else None,
            "attempt": attempt,
            "level": level,
            "event": f"node.{target.lower()}",
            "details": json.dumps(details or {}),
            "correlation_id": correlation.correlation_id.get(),
            "output": _json(output),
            "error": _json(error),
        },
    ).all()
    return _moved(session, execution_id, target, rows)


@dataclass(frozen=True)
class Result:
    """One attempt's outcome, to record: what its node gets in the move."""

    id: uuid.UUID
    attempt: int
    output: Any = None  # COMPLETED
    error: dict[str, Any] | None = None  # FAILED, UP_FOR_RETRY
    seconds: float | None = None  # UP_FOR_RETRY, DEFERRED: how long it waits
    details: dict[str, Any] | None = None  # more for its audit row


# Per target, what a result sets besides the status.
_RESULT_SETS = {
    NodeStatus.COMPLETED: "finished_at = clock_timestamp(), output = chosen.output, error = NULL",
    NodeStatus.FAILED: "finished_at = clock_timestamp(), error = chosen.error",
    NodeStatus.UP_FOR_RETRY: """not_before = clock_timestamp() + make_interval(secs => chosen.seconds),
                                error = chosen.error""",
    NodeStatus.DEFERRED: """not_before = clock_timestamp() + make_interval(secs => chosen.seconds),
                            wake_at = clock_timestamp() + make_interval(secs => chosen.seconds)""",
}


def _result_statement(target: NodeStatus) -> Prepared:
    return Prepared(
        f"record_{target.lower()}",
        f"""
        WITH given AS (
            SELECT * FROM unnest(:ids, :attempts, CAST(:outputs AS jsonb[]), CAST(:errors AS jsonb[]), :seconds,
                                 CAST(:details AS jsonb[]))
            AS g(id, attempt, output, error, seconds, details)
        ),
        chosen AS (
            SELECT ne.id, ne.status, given.output, given.error, given.seconds, given.details
            FROM given JOIN node_executions ne ON ne.id = given.id
            WHERE ne.execution_id = :execution_id AND ne.status = ANY(:sources) AND ne.attempt = given.attempt
            ORDER BY ne.id
            FOR UPDATE OF ne
        ),
        moved AS (
            UPDATE node_executions ne SET status = :target, {_RESULT_SETS[target]}
            FROM chosen WHERE ne.id = chosen.id
            RETURNING {_MOVED_COLUMNS}, chosen.details
        ),
        logged AS (
            INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
            SELECT :execution_id, node_id, :level, :event,
                   'node ' || node_id || ': ' || previous || ' -> ' || :target,
                   jsonb_build_object('from', previous, 'to', :target, 'attempt', attempt)
                       || COALESCE(details, '{{}}'::jsonb),
                   :correlation_id
            FROM moved
            ORDER BY id
        )
        SELECT id, node_id, attempt, rq_job_id, worker_name, previous FROM moved
        """,
        [
            ("execution_id", "uuid"),
            ("target", "text"),
            ("sources", "text[]"),
            ("ids", "uuid[]"),
            ("attempts", "integer[]"),
            ("outputs", "text[]"),
            ("errors", "text[]"),
            ("seconds", "double precision[]"),
            ("details", "text[]"),
            ("level", "text"),
            ("event", "text"),
            ("correlation_id", "text"),
        ],
    )


_RESULT_STATEMENTS = {target: _result_statement(target) for target in _RESULT_SETS}
_RESULT_LEVELS = {
    NodeStatus.COMPLETED: "info",
    NodeStatus.FAILED: "error",
    NodeStatus.UP_FOR_RETRY: "warning",
    NodeStatus.DEFERRED: "info",
}


def record_results(
    session: Session, execution_id: uuid.UUID, target: NodeStatus, results: Sequence[Result]
) -> list[MovedNode]:
    """RUNNING -> `target` for each result's node at its attempt, in one statement; log
    each. A node no longer RUNNING at that attempt (cancelled, or re-run after its worker
    was presumed dead) is left alone: its late result is dropped."""
    if not results:
        return []
    rows = (
        _RESULT_STATEMENTS[target]
        .execute(
            session,
            {
                "execution_id": execution_id,
                "target": str(target),
                "sources": [str(NodeStatus.RUNNING)],
                "ids": [r.id for r in results],
                "attempts": [r.attempt for r in results],
                "outputs": [_json(r.output) for r in results],
                "errors": [_json(r.error) for r in results],
                "seconds": [r.seconds for r in results],
                "details": [_json(r.details) for r in results],
                "level": _RESULT_LEVELS[target],
                "event": f"node.{target.lower()}",
                "correlation_id": correlation.correlation_id.get(),
            },
        )
        .all()
    )
    return _moved(session, execution_id, target, rows)


# A new attempt, with the RQ job that will carry it: [A-Za-z0-9_-] only. A node alone in
# its job gets an id of its own (one per attempt, and per wake-up from a wait), so a
# re-delivered attempt reuses it and a new one never collides with an old one.
_QUEUE = Prepared(
    "queue",
    f"""
    WITH chosen AS (
        SELECT ne.id, ne.status, w.job_id
        FROM unnest(:node_ids, :job_ids) AS w(node_id, job_id)
        JOIN node_executions ne ON ne.execution_id = :execution_id AND ne.node_id = w.node_id
        WHERE ne.status = ANY(:sources)
        ORDER BY ne.id
        FOR UPDATE OF ne
    ),
    moved AS (
        -- A new attempt, unless the node wakes from a wait (DEFERRED): that goes on with the
        -- attempt it started (and its timeout counts from that start).
        UPDATE node_executions ne
        SET status = 'QUEUED', attempt = ne.attempt + step.next, queued_at = clock_timestamp(), not_before = NULL,
            worker_name = NULL, wake_at = CASE WHEN step.next = 0 THEN ne.wake_at END,
            -- A wake-up keeps its attempt, so its job id gets a mark of its own: the job that
            -- deferred it may still be finishing, and must not be overwritten.
            rq_job_id = COALESCE(chosen.job_id,
                                 'node-' || replace(CAST(ne.id AS text), '-', '') || '-' || (ne.attempt + step.next)
                                 || CASE WHEN step.next = 0
                                         THEN '-w' || to_char(clock_timestamp(), 'YYYYMMDDHH24MISSUS') ELSE '' END)
        FROM chosen, LATERAL (SELECT CASE WHEN chosen.status = 'DEFERRED' THEN 0 ELSE 1 END AS next) step
        WHERE ne.id = chosen.id
        RETURNING {_MOVED_COLUMNS}
    ),
    {_LOGGED}
    SELECT id, node_id, attempt, rq_job_id, worker_name, previous FROM moved
    """,
    [
        ("execution_id", "uuid"),
        ("target", "text"),
        ("sources", "text[]"),
        ("node_ids", "text[]"),
        ("job_ids", "text[]"),
        ("level", "text"),
        ("event", "text"),
        ("details", "jsonb"),
        ("correlation_id", "text"),
    ],
)


def queue(
    session: Session,
    execution_id: uuid.UUID,
    node_ids: Collection[str],
    *,
    expected: Collection[NodeStatus] | None = None,
    job_ids: Mapping[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> list[MovedNode]:
    """Move the named nodes to QUEUED as a new attempt, each carried by the RQ job
    `job_ids` names for it (a job of its own otherwise); log each."""
    names = list(node_ids)
    jobs = job_ids or {}
    rows = _QUEUE.execute(
        session,
        {
            "execution_id": execution_id,
            "target": str(NodeStatus.QUEUED),
            "sources": _sources(NodeStatus.QUEUED, expected),
            "node_ids": names,
            "job_ids": [jobs.get(name) for name in names],
            "level": "info",
            "event": "node.queued",
            "details": json.dumps(details or {}),
            "correlation_id": correlation.correlation_id.get(),
        },
    ).all()
    return _moved(session, execution_id, NodeStatus.QUEUED, rows)


_INSERT_NODES = Prepared(
    "insert_nodes",
    """
    WITH made AS (
        SELECT gen_random_uuid() AS id, wn.node_id, cardinality(wn.dependencies) AS parents,
               :queue_roots AND cardinality(wn.dependencies) = 0 AS is_queued,
               :root_jobs ->> wn.node_id AS job_id
        FROM workflow_nodes wn
        WHERE wn.workflow_id = :workflow_id
    ),
    inserted AS (
        INSERT INTO node_executions (id, execution_id, node_id, status, attempt, remaining_deps, failed_parents,
                                     skipped_parents, queued_at, rq_job_id)
        SELECT id, :execution_id, node_id, CASE WHEN is_queued THEN 'QUEUED' ELSE 'PENDING' END,
               CASE WHEN is_queued THEN 1 ELSE 0 END, parents, 0, 0,
               CASE WHEN is_queued THEN clock_timestamp() END,
               CASE WHEN is_queued
                    THEN COALESCE(job_id, 'node-' || replace(CAST(id AS text), '-', '') || '-1') END
        FROM made
        RETURNING id, node_id, status, attempt, rq_job_id
    ),
    logged AS (
        INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
        SELECT :execution_id, node_id, 'info', 'node.queued', 'node ' || node_id || ': PENDING -> QUEUED',
               jsonb_build_object('from', 'PENDING', 'to', 'QUEUED', 'attempt', 1), :correlation_id
        FROM inserted WHERE status = 'QUEUED'
        ORDER BY id
    )
    SELECT id, node_id, attempt, rq_job_id FROM inserted WHERE status = 'QUEUED'
    """,
    [
        ("execution_id", "uuid"),
        ("workflow_id", "uuid"),
        ("queue_roots", "boolean"),
        ("root_jobs", "jsonb"),
        ("correlation_id", "text"),
    ],
)


def insert_nodes(
    session: Session,
    execution_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    queue_roots: bool,
    root_jobs: Mapping[str, str] | None = None,
) -> list[MovedNode]:
    """Insert an execution's node rows from its workflow's nodes, in one statement, all
    PENDING; or, with `queue_roots`, the roots (nodes without parents) QUEUED as attempt 1,
    each in the job `root_jobs` names for it (a job of its own otherwise; a JSON object,
    whose keys PostgreSQL finds by search, however many), with their audit rows. The
    caller sets the execution's counts. The queued roots."""
    rows = _INSERT_NODES.execute(
        session,
        {
            "execution_id": execution_id,
            "workflow_id": workflow_id,
            "queue_roots": queue_roots,
            "root_jobs": json.dumps(dict(root_jobs or {})),
            "correlation_id": correlation.correlation_id.get(),
        },
    ).all()
    return [MovedNode(r.id, r.node_id, r.attempt, r.rq_job_id, None, NodeStatus.PENDING) for r in rows]


@dataclass(frozen=True)
class ChildState:
    """A child's counters right after parents of it finished, and how it runs."""

    id: uuid.UUID
    node_id: str
    status: NodeStatus
    parents: int
    remaining: int
    failed_parents: int
    skipped_parents: int
    handler: str
    dependents: list[str]
    trigger_rule: str = "all_success"
    guard: str | None = None
    condition: str | None = None  # a guard in peer-a's grammar


_CHILD_COLUMNS = """ne.id, ne.node_id, ne.status, cardinality(wn.dependencies) AS parents, ne.remaining_deps,
                    ne.failed_parents, ne.skipped_parents, wn.handler, wn.dependents, wn.trigger_rule, wn.guard,
                    wn.condition"""


def children(rows: Iterable[Any]) -> list[ChildState]:
    """ChildStates from rows with the columns of _CHILD_COLUMNS, by name."""
    return [
        ChildState(
            r.id,
            r.node_id,
            NodeStatus(r.status),
            r.parents,
            r.remaining_deps,
            r.failed_parents,
            r.skipped_parents,
            r.handler,
            list(r.dependents),
            r.trigger_rule,
            r.guard,
            r.condition,
        )
        for r in rows
    ]


_COUNT_PARENTS = Prepared(
    "count_parents",
    f"""
    WITH locked AS (
        SELECT ne.id, c.done, c.failed, c.skipped
        FROM unnest(:children, :done, :failed, :skipped) AS c(node_id, done, failed, skipped)
        JOIN node_executions ne ON ne.execution_id = :execution_id AND ne.node_id = c.node_id
        ORDER BY ne.id
        FOR UPDATE OF ne
    )
    UPDATE node_executions ne
    SET remaining_deps = ne.remaining_deps - locked.done,
        failed_parents = ne.failed_parents + locked.failed,
        skipped_parents = ne.skipped_parents + locked.skipped
    FROM locked, workflow_nodes wn
    WHERE ne.id = locked.id AND wn.workflow_id = :workflow_id AND wn.node_id = ne.node_id
    RETURNING {_CHILD_COLUMNS}
    """,
    [
        ("execution_id", "uuid"),
        ("workflow_id", "uuid"),
        ("children", "text[]"),
        ("done", "integer[]"),
        ("failed", "integer[]"),
        ("skipped", "integer[]"),
    ],
)


@dataclass
class ParentCounts:
    """How many of a child's parents just finished, and how many of those failed or were skipped."""

    done: int = 0
    failed: int = 0
    skipped: int = 0


def count_parent_outcomes(
    session: Session, execution_id: uuid.UUID, workflow_id: uuid.UUID, counts: Mapping[str, ParentCounts]
) -> list[ChildState]:
    """Parents finished: count them off their children, in one statement (O(the edges
    counted)). Row locks serialise concurrent parents, so exactly one of them sees a
    child's count reach zero."""
    if not counts:
        return []
    node_ids = list(counts)
    rows = _COUNT_PARENTS.execute(
        session,
        {
            "execution_id": execution_id,
            "workflow_id": workflow_id,
            "children": node_ids,
            "done": [counts[c].done for c in node_ids],
            "failed": [counts[c].failed for c in node_ids],
            "skipped": [counts[c].skipped for c in node_ids],
        },
    ).all()
    return children(rows)


_RESET = Prepared(
    "reset",
    """
    WITH chosen AS (
        SELECT ne.id, ne.status
        FROM unnest(:node_ids) AS w(node_id)
        JOIN node_executions ne ON ne.execution_id = :execution_id AND ne.node_id = w.node_id
        WHERE ne.status = ANY(:sources)
        ORDER BY ne.id
        FOR UPDATE OF ne
    ),
    moved AS (
        UPDATE node_executions ne
        SET status = 'PENDING', output = NULL, error = NULL, queued_at = NULL, started_at = NULL,
            finished_at = NULL, not_before = NULL, wake_at = NULL, worker_name = NULL
        FROM chosen WHERE ne.id = chosen.id
        RETURNING ne.id, ne.node_id, ne.attempt, chosen.status AS previous
    ),
    logged AS (
        INSERT INTO execution_logs (execution_id, node_id, level, event, message, details, correlation_id)
        SELECT :execution_id, node_id, 'info', 'node.pending',
               'node ' || node_id || ': ' || previous || ' -> PENDING (retry)',
               jsonb_build_object('from', previous, 'to', 'PENDING', 'attempt', attempt) || :details,
               :correlation_id
        FROM moved
        ORDER BY id
    )
    SELECT id, previous FROM moved
    """,
    [
        ("execution_id", "uuid"),
        ("sources", "text[]"),
        ("node_ids", "text[]"),
        ("details", "jsonb"),
        ("correlation_id", "text"),
    ],
)

# Run after the reset commits to the transaction: the nodes reset with these are PENDING
# now, so they count as parents still to come, and the others as they ended.
_RECOUNT_PARENTS = Prepared(
    "recount_parents",
    f"""
    WITH counted AS (
        SELECT ne.id, parents.remaining, parents.failed, parents.skipped
        FROM unnest(:ids) AS r(id)
        JOIN node_executions ne ON ne.id = r.id
        JOIN workflow_nodes wn ON wn.workflow_id = :workflow_id AND wn.node_id = ne.node_id
        -- Each parent looked up by its key (a join hung off the list would filter every
        -- node of the execution per parent).
        CROSS JOIN LATERAL (
            SELECT count(*) FILTER (WHERE p.status = ANY(:unfinished)) AS remaining,
                   count(*) FILTER (WHERE p.status = ANY(:failures)) AS failed,
                   count(*) FILTER (WHERE p.status = 'SKIPPED') AS skipped
            FROM unnest(wn.dependencies) AS dep(node_id)
            JOIN node_executions p ON p.execution_id = ne.execution_id AND p.node_id = dep.node_id
        ) parents
    )
    UPDATE node_executions ne
    SET remaining_deps = counted.remaining, failed_parents = counted.failed, skipped_parents = counted.skipped
    FROM counted, workflow_nodes wn
    WHERE ne.id = counted.id AND wn.workflow_id = :workflow_id AND wn.node_id = ne.node_id
    RETURNING {_CHILD_COLUMNS}
    """,
    [
        ("workflow_id", "uuid"),
        ("ids", "uuid[]"),
        ("unfinished", "text[]"),
        ("failures", "text[]"),
    ],
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
    moved = _RESET.execute(
        session,
        {
            "execution_id": execution_id,
            "sources": sorted(str(s) for s in node_sources(NodeStatus.PENDING)),
            "node_ids": list(node_ids),
            "details": json.dumps(details or {}),
            "correlation_id": correlation.correlation_id.get(),
        },
    ).all()
    node_counts.note(session, execution_id, ((r.previous, NodeStatus.PENDING) for r in moved))
    if not moved:
        return []
    rows = _RECOUNT_PARENTS.execute(
        session,
        {
            "workflow_id": workflow_id,
            "ids": [r.id for r in moved],
            "unfinished": values(NODE_UNFINISHED),
            "failures": values(NODE_PARENT_FAILED | {NodeStatus.CANCELLED}),
        },
    ).all()
    return children(rows)
