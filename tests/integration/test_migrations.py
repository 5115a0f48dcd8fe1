"""The migrations build exactly the schema the models describe, and unwind cleanly."""

from __future__ import annotations

import uuid

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from app import migrate
from app.db import Base


def test_migrations_match_the_models_and_downgrade_to_nothing(database_url: str) -> None:
    url = make_url(database_url)
    scratch = f"stepwise_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{scratch}"'))
    scratch_url = url.set(database=scratch).render_as_string(hide_password=False)
    try:
        migrate.upgrade(scratch_url)
        engine = create_engine(scratch_url, poolclass=NullPool)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        config = migrate.alembic_config(scratch_url)
        command.downgrade(config, "base")
        with engine.connect() as conn:
            tables = (
                conn.execute(
                    text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
                .scalars()
                .all()
            )
        assert tables == []
        command.upgrade(config, "head")
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
        admin.dispose()
