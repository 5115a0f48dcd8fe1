"""The PostgreSQL engine, session factory and declarative base.

Plain SQLAlchemy rather than Flask-SQLAlchemy: RQ jobs and the scheduler use the
same sessions without an app context.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


CONNECT_TIMEOUT_SECONDS = 5


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONB, dict[str, int]: JSONB, list[Any]: JSONB}


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine whose connections plan prepared statements once (repositories/prepared.py).

    No pre-ping: a round trip on every checkout costs more than it saves. A connection
    that broke while pooled fails its first statement, is invalidated with the rest of
    the pool, and the next checkout connects afresh.
    """
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        # A PostgreSQL that is unreachable (not merely stopped) fails a connect in 5 s, and a
        # connection whose peer vanished is noticed by TCP keepalives in about 25 s, rather
        # than hanging a request or a worker for the kernel's minutes.
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        },
    )

    @event.listens_for(engine, "connect")
    def _generic_plans(dbapi_connection: Any, _record: Any) -> None:
        # A prepared statement here is keyed by ids: its generic plan is as good as any
        # custom one, and planning it again on every EXECUTE is the cost PREPARE avoids.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_generic_plan")
        dbapi_connection.commit()

    return engine


def unreachable(err: BaseException) -> bool:
    """PostgreSQL could not be reached or dropped the connection (as opposed to refusing
    what it was sent): worth waiting for, and a 503 rather than a 500."""
    return isinstance(err, OperationalError | InterfaceError) or (
        isinstance(err, DBAPIError) and err.connection_invalidated
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # Objects stay readable after commit: services return them to views and jobs.
    # No autobegin: every statement runs inside a service's explicit `with
    # session.begin()`, and a query outside one fails loudly instead of leaving
    # the session in a transaction the next service would trip over.
    """Sessions for services: explicit transactions only."""
    return sessionmaker(engine, expire_on_commit=False, autobegin=False)
