"""Worker heartbeats in PostgreSQL: how the scheduler tells a lost node from a slow one."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import WorkerHeartbeat


def beat(
    session: Session,
    name: str,
    hostname: str,
    pid: int,
    tracks_current: bool,
    current_node_execution_id: uuid.UUID | None,
) -> None:
    """Record that the worker is alive, and the node it is running (if it tracks that)."""
    values = {
        "name": name,
        "hostname": hostname,
        "pid": pid,
        "tracks_current": tracks_current,
        "current_node_execution_id": current_node_execution_id,
    }
    session.execute(
        insert(WorkerHeartbeat)
        .values(**values)
        .on_conflict_do_update(
            index_elements=[WorkerHeartbeat.name],
            set_={"current_node_execution_id": current_node_execution_id, "heartbeat_at": func.now()},
        )
    )


def forget(session: Session, name: str) -> None:
    """A worker that stopped cleanly."""
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.name == name))


def forget_silent(session: Session, seconds: int) -> int:
    """Drop rows of workers silent for `seconds`; how many."""
    return len(
        session.execute(
            delete(WorkerHeartbeat)
            .where(WorkerHeartbeat.heartbeat_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, seconds))
            .returning(WorkerHeartbeat.name)
        ).all()
    )
