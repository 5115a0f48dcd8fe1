"""Reading and discarding dead letters (retrying one is control.retry_dead_letter)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from app.domain.errors import NotFoundError
from app.models import DeadLetter
from app.repositories import audit, paging
from app.repositories import dead_letters as dead_letters_repo
from app.repositories.audit import LogEntry


def list_dead_letters(session: Session, **page: Any) -> paging.Page[DeadLetter]:
    """A page of dead letters, newest first (see dead_letters_repo.page for the filters)."""
    with session.begin():
        return dead_letters_repo.page(session, **page)


def oldest_dead_letters(session: Session, limit: int, adhoc_only: bool = False) -> tuple[list[DeadLetter], int]:
    """The oldest `limit` dead letters, and how many there are (of ad-hoc workflows only,
    with `adhoc_only`): peer-a's DLQ."""
    with session.begin():
        return dead_letters_repo.oldest(session, limit, adhoc_only)


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
