"""Reading and discarding dead letters (retrying one is control.retry_dead_letter)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.domain.errors import NotFoundError
from app.models import DeadLetter
from app.repositories import audit
from app.repositories import dead_letters as dead_letters_repo
from app.repositories.audit import LogEntry


def list_dead_letters(
    session: Session,
    *,
    workflow_id: uuid.UUID | None,
    execution_id: uuid.UUID | None,
    category: str | None,
    node_id: str | None,
    limit: int,
    offset: int,
    oldest_first: bool = False,
    adhoc_only: bool = False,
) -> tuple[list[DeadLetter], int]:
    """A page of dead letters, newest first (or oldest first), and the total that match (of
    ad-hoc workflows only, with `adhoc_only`)."""
    with session.begin():
        return dead_letters_repo.page(
            session,
            workflow_id=workflow_id,
            execution_id=execution_id,
            category=category,
            node_id=node_id,
            limit=limit,
            offset=offset,
            oldest_first=oldest_first,
            adhoc_only=adhoc_only,
        )


def get_dead_letter(session: Session, dead_letter_id: uuid.UUID) -> DeadLetter:
    """One dead letter."""
    with session.begin():
        letter = dead_letters_repo.get(session, dead_letter_id)
        if letter is None:
            raise NotFoundError(f"dead letter {dead_letter_id} not found")
        return letter


def delete_dead_letter(session: Session, dead_letter_id: uuid.UUID) -> None:
    """Discard a dead letter (logged in its execution); its node stays FAILED."""
    with session.begin():
        letter = dead_letters_repo.get(session, dead_letter_id)
        if letter is None or not dead_letters_repo.remove(session, dead_letter_id):
            raise NotFoundError(f"dead letter {dead_letter_id} not found")
        audit.record(
            session,
            [
                LogEntry(
                    letter.execution_id,
                    "dead_letter.deleted",
                    f"dead letter {dead_letter_id} of node {letter.node_id} deleted",
                    letter.node_id,
                    "warning",
                    {"dead_letter_id": str(dead_letter_id), "category": letter.category},
                )
            ],
        )
