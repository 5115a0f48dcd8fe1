"""The bench's own PostgreSQL access: plain psycopg2, outside the engine's code."""

from __future__ import annotations

from typing import Any

import psycopg2
from psycopg2.extensions import connection as Connection
from psycopg2.extensions import cursor as Cursor
from sqlalchemy.engine import make_url


def libpq_url(database_url: str) -> str:
    """The settings' SQLAlchemy URL as libpq takes it (no `+driver`)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def connect(database_url: str) -> Connection:
    """An autocommit connection: each poll sees the latest commit, and none sits in a transaction."""
    conn = psycopg2.connect(libpq_url(database_url))
    conn.autocommit = True
    return conn


def one_row(cur: Cursor) -> tuple[Any, ...]:
    """The row a query that always returns one (an aggregate) returned."""
    row = cur.fetchone()
    if row is None:
        raise RuntimeError(f"no row from {cur.query!r}")
    return row
