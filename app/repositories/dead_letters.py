"""Dead letters: nodes that used up their attempts, kept until an operator retries or deletes them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from app.models import DeadLetter, Workflow
from app.repositories import paging


def add(session: Session, values: dict[str, Any]) -> uuid.UUID:
    """Insert a dead letter; its id."""
    return session.scalars(insert(DeadLetter).values(id=uuid.uuid4(), **values).returning(DeadLetter.id)).one()


def get(session: Session, dead_letter_id: uuid.UUID, *, lock: bool = False) -> DeadLetter | None:
    """A dead letter by id, optionally locked until commit."""
    return session.get(DeadLetter, dead_letter_id, with_for_update=lock or None)


def page(
    session: Session,
    *,
    workflow_id: uuid.UUID | None,
    execution_id: uuid.UUID | None,
    category: str | None,
    node_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    after: paging.Key | None,
    limit: int,
    count: bool,
) -> paging.Page[DeadLetter]:
    """Dead letters that match, newest first, a page after `after`."""
    query = select(DeadLetter)
    for column, value in (
        (DeadLetter.workflow_id, workflow_id),
        (DeadLetter.execution_id, execution_id),
        (DeadLetter.category, category),
        (DeadLetter.node_id, node_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if created_after:
        query = query.where(DeadLetter.created_at >= created_after)
    if created_before:
        query = query.where(DeadLetter.created_at < created_before)
    return paging.newest_first(
        session, query, DeadLetter.created_at, DeadLetter.id, after=after, limit=limit, count=count,
        key_of=lambda d: (d.created_at, d.id),
    )  # fmt: skip


def oldest(session: Session, limit: int, adhoc_only: bool) -> tuple[list[DeadLetter], int]:
    """The oldest `limit` dead letters and how many there are (of ad-hoc workflows only,
    with `adhoc_only`): peer-a's DLQ listing."""
    query = select(DeadLetter)
    if adhoc_only:
        query = query.join(Workflow, Workflow.id == DeadLetter.workflow_id).where(Workflow.adhoc)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(DeadLetter.created_at, DeadLetter.id).limit(limit))
    return list(rows), total


def remove(session: Session, dead_letter_id: uuid.UUID) -> bool:
    """Delete a dead letter; False if it was not there."""
    return (
        session.execute(delete(DeadLetter).where(DeadLetter.id == dead_letter_id).returning(DeadLetter.id)).first()
        is not None
    )


def remove_for_nodes(session: Session, execution_id: uuid.UUID, node_ids: list[str]) -> int:
    """Delete the execution's dead letters of these nodes; how many."""
    if not node_ids:
        return 0
    return len(
        session.execute(
            delete(DeadLetter)
            .where(DeadLetter.execution_id == execution_id, DeadLetter.node_id.in_(node_ids))
            .returning(DeadLetter.id)
        ).all()
    )
