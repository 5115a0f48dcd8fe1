"""Lists newest first, a page at a time, by keyset: each page starts after the (created_at,
id) of the last row of the one before, so a page costs its own size however far it is,
and rows inserted meanwhile neither shift nor repeat it. The total is counted only when
asked for: a COUNT grows with the table."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, literal, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

T = TypeVar("T")
Key = tuple[datetime, uuid.UUID]  # (created_at, id) of a row: where the next page starts


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_key: Key | None  # None: this was the last page
    total: int | None = None  # when counted


def newest_first(
    session: Session,
    query: Select[Any],
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    *,
    after: Key | None,
    limit: int,
    count: bool,
    key_of: Callable[[Any], Key],
    scalars: bool = True,
) -> Page[Any]:
    """A page of `query`'s rows, newest first, after `after`; `key_of` gives a row's key."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) if count else None
    if after is not None:
        query = query.where(tuple_(created_at, row_id) < tuple_(literal(after[0]), literal(after[1])))
    ordered = query.order_by(created_at.desc(), row_id.desc()).limit(limit + 1)
    rows = list(session.scalars(ordered) if scalars else session.execute(ordered))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, key_of(rows[-1]) if more else None, total)
