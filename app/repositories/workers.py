"""Worker heartbeats in PostgreSQL: how the scheduler tells a lost node from a slow one."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

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
    running: Sequence[uuid.UUID],
) -> None:
    """Record that the worker is alive, and the nodes it holds (if it tracks them)."""
    values = {
        "name": name,
        "hostname": hostname,
        "pid": pid,
        "tracks_current": tracks_current,
        "running": list(running),
    }
    session.execute(
        insert(WorkerHeartbeat)
        .values(**values)
        .on_conflict_do_update(
            index_elements=[WorkerHeartbeat.name],
            set_={"running": list(running), "heartbeat_at": func.now()},
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
