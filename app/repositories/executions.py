"""Executions: idempotent creation, guarded status changes, the execution lock and the scheduler's lists."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Uuid, bindparam, func, select, text, update
from sqlalchemy.orm import Session

from app import correlation
from app.domain.states import ExecutionStatus, execution_sources
from app.models import Execution, Workflow
from app.repositories import audit, node_counts, paging
from app.repositories.audit import LogEntry
from app.repositories.prepared import Prepared

_INSERT = Prepared(
    "insert_execution",
    """
    WITH inserted AS (
        INSERT INTO executions (id, workflow_id, status, idempotency_key, request_fingerprint, input, node_params,
                                correlation_id, nodes_total, node_counts, scheduled_at, max_retries, dry_run,
                                attempt, started_at, deadline_at)
        VALUES (:id, :workflow_id, :status, :idempotency_key, :fingerprint, :input, :node_params,
                :correlation_id, :nodes_total, :node_counts, :scheduled_at, :max_retries, :dry_run, 1,
                CASE WHEN :status = 'RUNNING' THEN now() END,
                CASE WHEN :status = 'RUNNING' AND :timeout_seconds IS NOT NULL
                     THEN now() + make_interval(secs => :timeout_seconds) END)
        ON CONFLICT (workflow_id, idempotency_key) DO NOTHING
        RETURNING *
    ),
    logged AS (
        INSERT INTO execution_logs (execution_id, level, event, message, details, correlation_id)
        SELECT inserted.id, 'info', entry.event, entry.message, entry.details, :correlation_id
        FROM inserted,
             unnest(:events, :messages, CAST(:details AS jsonb[])) WITH ORDINALITY AS entry(event, message, details, n)
        ORDER BY entry.n
    )
    SELECT * FROM inserted
    """,
    [
        ("id", "uuid"),
        ("workflow_id", "uuid"),
        ("status", "text"),
        ("idempotency_key", "text"),
        ("fingerprint", "text"),
        ("input", "jsonb"),
        ("node_params", "jsonb"),
        ("correlation_id", "text"),
        ("nodes_total", "integer"),
        ("node_counts", "jsonb"),
        ("scheduled_at", "timestamptz"),
        ("max_retries", "integer"),
        ("dry_run", "boolean"),
        ("timeout_seconds", "double precision"),
        ("events", "text[]"),
        ("messages", "text[]"),
        ("details", "text[]"),
    ],
)


def insert(
    session: Session, values: dict[str, Any], timeout_seconds: float | None, entries: Sequence[LogEntry]
) -> Execution | None:
    """Insert an execution with its first audit rows, in one statement; None when
    (workflow_id, idempotency_key) is taken. A RUNNING one starts now (its deadline
    `timeout_seconds` from now).

    ON CONFLICT rather than select-then-insert: a concurrent twin waits on the
    unique index and then sees the winner's committed row, never a 500.
    """
    row = _INSERT.execute(
        session,
        {
            **values,
            "input": json.dumps(values["input"]),
            "node_params": json.dumps(values["node_params"]) if values["node_params"] else None,
            "node_counts": json.dumps(values["node_counts"]),
            "timeout_seconds": timeout_seconds,
            "events": [e.event for e in entries],
            "messages": [e.message for e in entries],
            "details": [json.dumps(e.details) for e in entries],
        },
    ).first()
    return Execution(**row._asdict()) if row else None


def by_key(session: Session, workflow_id: uuid.UUID, key: str) -> tuple[Execution, Workflow] | None:
    """The execution a key made for one workflow version."""
    row = session.execute(
        select(Execution, Workflow)
        .join(Workflow, Workflow.id == Execution.workflow_id)
        .where(Execution.workflow_id == workflow_id, Execution.idempotency_key == key)
    ).first()
    return (row[0], row[1]) if row else None


def by_name_and_key(session: Session, name: str, key: str) -> tuple[Execution, Workflow] | None:
    """The execution a key made for any version of the named workflow (the earliest)."""
    row = session.execute(
        select(Execution, Workflow)
        .join(Workflow, Workflow.id == Execution.workflow_id)
        .where(Workflow.name == name, Execution.idempotency_key == key)
        .order_by(Execution.created_at)
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None


def lock_name_and_key(session: Session, name: str, key: str) -> None:
    """Serialise triggers of one (workflow name, idempotency key) until commit."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:lock))"), {"lock": f"trigger:{len(name)}:{name}:{key}"}
    )


def get_with_workflow(session: Session, execution_id: uuid.UUID) -> tuple[Execution, Workflow] | None:
    """An execution and its workflow version, or None; fresh from the database even if
    this session loaded them before (state changes are Core UPDATEs the session does not see)."""
    row = session.execute(
        select(Execution, Workflow)
        .join(Workflow, Workflow.id == Execution.workflow_id)
        .where(Execution.id == execution_id)
        .execution_options(populate_existing=True)
    ).first()
    return (row[0], row[1]) if row else None


def page(
    session: Session,
    *,
    workflow_id: uuid.UUID | None,
    workflow_name: str | None,
    statuses: Sequence[str],
    idempotency_key: str | None,
    correlation_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    after: paging.Key | None,
    limit: int,
    count: bool,
) -> paging.Page[tuple[Execution, Workflow]]:
    """Executions that match, with their workflows, newest first, a page after `after`."""
    query = select(Execution, Workflow).join(Workflow, Workflow.id == Execution.workflow_id)
    for column, value in (
        (Execution.workflow_id, workflow_id),
        (Workflow.name, workflow_name),
        (Execution.idempotency_key, idempotency_key),
        (Execution.correlation_id, correlation_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if statuses:
        query = query.where(Execution.status.in_(statuses))
    if created_after:
        query = query.where(Execution.created_at >= created_after)
    if created_before:
        query = query.where(Execution.created_at < created_before)
    found = paging.newest_first(
        session, query, Execution.created_at, Execution.id, after=after, limit=limit, count=count,
        key_of=lambda row: (row[0].created_at, row[0].id), scalars=False,
    )  # fmt: skip
    return paging.Page([(e, w) for e, w in found.items], found.next_key, found.total)


@dataclass(frozen=True)
class Note:
    """What a transition's audit row says: its message, level and details (the from and to
    states are added)."""

    message: str
    level: str = "info"
    details: Mapping[str, Any] = field(default_factory=dict)


def transition(
    session: Session,
    execution_id: uuid.UUID,
    target: ExecutionStatus,
    note: Note,
    columns: Mapping[str, Any] | None = None,
) -> ExecutionStatus | None:
    """Move an execution to `target` from wherever the state table allows, setting
    `columns` too, and log it with `note`.

    Returns the status it left, or None when it was not in a source state (a
    lost race or a finished execution): the caller decides if that matters.
    """
    old = (
        select(Execution.id, Execution.status)
        .where(Execution.id == execution_id, Execution.status.in_(execution_sources(target)))
        # NO KEY UPDATE, as in lock(): a FOR UPDATE here would block the foreign-key
        # check of a claim's audit insert while that claim holds a node we need next.
        .with_for_update(key_share=True)
        .subquery("old")
    )
    previous = session.scalar(
        update(Execution)
        .where(Execution.id == old.c.id)
        .values(status=target, updated_at=func.now(), **(columns or {}))
        .returning(old.c.status)
        .execution_options(synchronize_session=False)
    )
    if previous is None:
        return None
    audit.record(
        session,
        [
            LogEntry(
                execution_id,
                f"execution.{target.lower()}",
                note.message,
                level=note.level,
                details={"from": previous, "to": str(target), **note.details},
            )
        ],
    )
    return ExecutionStatus(previous)


_COMPLETE = Prepared(
    "complete_execution",
    """
    WITH moved AS (
        UPDATE executions SET status = 'COMPLETED', finished_at = now(), updated_at = now()
        WHERE id = :id AND status = ANY(:sources)
        RETURNING id, correlation_id
    )
    INSERT INTO execution_logs (execution_id, level, event, message, details, correlation_id)
    SELECT id, 'info', 'execution.completed', 'execution completed', jsonb_build_object('from', 'RUNNING',
           'to', 'COMPLETED'), COALESCE(:correlation_id, correlation_id)
    FROM moved
    RETURNING execution_id
    """,
    [("id", "uuid"), ("sources", "text[]"), ("correlation_id", "text")],
)


def complete(session: Session, execution_id: uuid.UUID) -> bool:
    """RUNNING -> COMPLETED, logged, in one statement (the hot end of every execution);
    False when it was not RUNNING."""
    sources = sorted(str(s) for s in execution_sources(ExecutionStatus.COMPLETED))
    params = {"id": execution_id, "sources": sources, "correlation_id": correlation.correlation_id.get()}
    return _COMPLETE.execute(session, params).first() is not None


_LOCK = text("SELECT status FROM executions WHERE id = :id FOR NO KEY UPDATE").bindparams(bindparam("id", type_=Uuid))


def lock(session: Session, execution_id: uuid.UUID) -> ExecutionStatus | None:
    """Lock the execution row until commit; its status, or None if it does not exist.

    Every transaction that changes more than one node of an execution takes
    this lock first, then node rows in id order: one global order, so they
    cannot deadlock (a failure cascade locks nodes over several statements).
    NO KEY UPDATE leaves inserts that reference the row (audit rows) unblocked.
    """
    status = session.scalar(_LOCK, {"id": execution_id})
    return ExecutionStatus(status) if status is not None else None


_LOCK_MANY = Prepared(
    "lock_executions",
    """
    SELECT id, status, node_counts, deadline_at IS NOT NULL AND deadline_at < clock_timestamp() AS past_deadline
    FROM executions WHERE id = ANY(:ids) ORDER BY id FOR NO KEY UPDATE
    """,
    [("ids", "uuid[]")],
)


def lock_many(session: Session, execution_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, tuple[ExecutionStatus, bool]]:
    """lock() for several executions at once, in id order (the global lock order): each
    one's status, and whether its deadline has passed. Their node counts are remembered for
    the rest of the transaction (node_counts.settle)."""
    if not execution_ids:
        return {}
    locked = {}
    for row in _LOCK_MANY.execute(session, {"ids": list(execution_ids)}):
        status = ExecutionStatus(row.status)
        locked[row.id] = (status, row.past_deadline)
        node_counts.remember(session, row.id, status, row.node_counts)
    return locked


def fails_fast(session: Session, execution_id: uuid.UUID) -> bool:
    """Whether the execution's workflow fails fast (a node failing for good ends it at once)."""
    return bool(
        session.scalar(
            select(Workflow.fail_fast)
            .join(Execution, Execution.workflow_id == Workflow.id)
            .where(Execution.id == execution_id)
        )
    )


def _due(session: Session, status: ExecutionStatus, column: Any, limit: int) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Execution.id)
            .where(Execution.status == status, column.is_not(None), column <= func.now())
            .order_by(column)
            .limit(limit)
        )
    )


def due_to_start(session: Session, limit: int) -> list[uuid.UUID]:
    """PENDING executions whose scheduled time has come."""
    return _due(session, ExecutionStatus.PENDING, Execution.scheduled_at, limit)


def due_to_retry(session: Session, limit: int) -> list[uuid.UUID]:
    """RETRYING executions whose automatic retry is due."""
    return _due(session, ExecutionStatus.RETRYING, Execution.retry_at, limit)


def past_deadline(session: Session, limit: int) -> list[uuid.UUID]:
    """RUNNING executions past their deadline."""
    return _due(session, ExecutionStatus.RUNNING, Execution.deadline_at, limit)


_PURGE = text(
    """
    WITH doomed AS (
        (SELECT id, workflow_id FROM executions
          WHERE finished_at < now() - make_interval(days => :days)
          ORDER BY finished_at LIMIT :limit)
        UNION ALL
        -- A peers' submission never triggered: PENDING with no start time, on an ad-hoc workflow.
        (SELECT e.id, e.workflow_id FROM executions e JOIN workflows w ON w.id = e.workflow_id AND w.adhoc
          WHERE e.status = 'PENDING' AND e.scheduled_at IS NULL
            AND e.created_at < now() - make_interval(days => :days)
          ORDER BY e.created_at LIMIT :limit)
    ),
    purged AS (
        DELETE FROM executions e USING doomed WHERE e.id = doomed.id RETURNING e.id, e.workflow_id
    ),
    orphans AS (
        -- An ad-hoc workflow exists for its one submission: it goes with its last execution.
        DELETE FROM workflows w
        WHERE w.adhoc AND w.id IN (SELECT workflow_id FROM purged)
          AND NOT EXISTS (SELECT 1 FROM executions e
                          WHERE e.workflow_id = w.id AND e.id NOT IN (SELECT id FROM purged))
        RETURNING w.id
    )
    SELECT (SELECT count(*) FROM purged) AS executions, (SELECT count(*) FROM orphans) AS workflows
    """
)


def purge_finished_before(session: Session, days: int, limit: int) -> tuple[int, int]:
    """Delete up to `limit` executions that finished more than `days` ago (and ad-hoc
    submissions never triggered in that time), with their nodes, logs and dead letters,
    and the ad-hoc workflows they leave without an execution, with their nodes;
    (executions, workflows) deleted."""
    row = session.execute(_PURGE, {"days": days, "limit": limit}).one()
    return row.executions, row.workflows


def attempts(session: Session, execution_id: uuid.UUID) -> tuple[int, int]:
    """(attempt, max_retries) of an execution."""
    row = session.execute(select(Execution.attempt, Execution.max_retries).where(Execution.id == execution_id)).one()
    return row[0], row[1]


def is_past(session: Session, moment: datetime) -> bool:
    """Whether `moment` is before the database's now (one clock for every process)."""
    return bool(session.scalar(select(func.now() >= moment)))


def input_of(session: Session, execution_id: uuid.UUID) -> dict[str, Any]:
    """An execution's input."""
    return session.scalar(select(Execution.input).where(Execution.id == execution_id)) or {}
