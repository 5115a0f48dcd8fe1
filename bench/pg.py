"""The bench's own PostgreSQL access: plain psycopg2, outside the engine's code."""

from __future__ import annotations

import psycopg2
from psycopg2.extensions import connection as Connection
from sqlalchemy.engine import make_url


def libpq_url(database_url: str) -> str:
    """The settings' SQLAlchemy URL as libpq takes it (no `+driver`)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def connect(database_url: str) -> Connection:
    """An autocommit connection: each poll sees the latest commit, and none sits in a transaction."""
    conn = psycopg2.connect(libpq_url(database_url))
    conn.autocommit = True
    return conn
