"""API keys, by the SHA-256 of the key (the key itself is never stored)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.models import ApiKey
from app.repositories import paging


def add(session: Session, name: str, role: str, key_hash: str, prefix: str) -> ApiKey | None:
    """Insert a key; None when the name is taken."""
    return session.scalar(
        insert(ApiKey)
        .values(id=uuid.uuid4(), name=name, role=role, key_hash=key_hash, prefix=prefix)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(ApiKey)
    )


def by_hash(session: Session, key_hash: str) -> ApiKey | None:
    """The live (not revoked) key with this hash."""
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked.is_(False)))


def mark_used(session: Session, key_id: uuid.UUID) -> None:
    """Record a use, at most once a minute per key: a busy key must not be a hot row."""
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 1)),
        )
        .values(last_used_at=func.now())
        .execution_options(synchronize_session=False)
    )


def page(session: Session, *, after: paging.Key | None, limit: int, count: bool) -> paging.Page[ApiKey]:
    """Keys (revoked ones too), newest first, a page after `after`."""
    return paging.newest_first(
        session, select(ApiKey), ApiKey.created_at, ApiKey.id, after=after, limit=limit, count=count,
        key_of=lambda k: (k.created_at, k.id),
    )  # fmt: skip


def revoke(session: Session, id_or_name: str) -> ApiKey | None:
    """Revoke a live key, by id or name; None if there is none."""
    try:
        match = ApiKey.id == uuid.UUID(id_or_name)
    except ValueError:
        match = ApiKey.name == id_or_name
    return session.scalar(
        update(ApiKey)
        .where(match, ApiKey.revoked.is_(False))
        .values(revoked=True, revoked_at=func.now())
        .returning(ApiKey)
        .execution_options(synchronize_session=False)
    )
