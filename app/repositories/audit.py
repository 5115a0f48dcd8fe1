"""The audit trail (execution_logs, workflow_events), written in the same transaction as each change."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app import correlation
from app.models import ExecutionLog, WorkflowEvent


@dataclass(frozen=True)
class LogEntry:
    execution_id: uuid.UUID
    event: str
    message: str
    node_id: str | None = None
    level: str = "info"
    details: dict[str, Any] = field(default_factory=dict)


def record(session: Session, entries: Sequence[LogEntry]) -> None:
    """Insert the entries in one statement."""
    if not entries:
        return
    session.execute(
        insert(ExecutionLog),
        [
            {
                "execution_id": e.execution_id,
                "node_id": e.node_id,
                "level": e.level,
                "event": e.event,
                "message": e.message,
                "details": e.details,
                "correlation_id": correlation.correlation_id.get(),  # NULL: the execution's, by trigger
            }
            for e in entries
        ],
    )


def record_workflow_event(
    session: Session, workflow_id: uuid.UUID, event: str, message: str, details: dict[str, Any] | None = None
) -> None:
    """Insert one workflow_events row."""
    session.execute(
        insert(WorkflowEvent).values(workflow_id=workflow_id, event=event, message=message, details=details or {})
    )


# Severity order for "at least this level".
LEVELS = ("debug", "info", "warning", "error")


def logs(
    session: Session,
    execution_id: uuid.UUID,
    *,
    min_level: str = "debug",
    node_id: str | None = None,
    since: datetime | None = None,
    after_id: int | None = None,
    limit: int = 100,
) -> list[ExecutionLog]:
    """An execution's log rows in order, at `min_level` or above; keyset-paged by id."""
    query = select(ExecutionLog).where(
        ExecutionLog.execution_id == execution_id, ExecutionLog.level.in_(LEVELS[LEVELS.index(min_level) :])
    )
    if node_id is not None:
        query = query.where(ExecutionLog.node_id == node_id)
    if since is not None:
        query = query.where(ExecutionLog.created_at >= since)
    if after_id is not None:
        query = query.where(ExecutionLog.id > after_id)
    return list(session.scalars(query.order_by(ExecutionLog.id).limit(limit)))
