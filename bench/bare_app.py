"""The floor the API's trigger is measured against: a bare Flask app whose one endpoint
does one INSERT and COMMIT, served by gunicorn with the API's settings.

    gunicorn --config gunicorn.conf.py --workers 2 'bench.bare_app:create_app()'

The bench creates the table (`ensure_table`) before starting it: two gunicorn workers
creating it at once would race on the catalogue.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from psycopg2.extensions import connection as Connection
from psycopg2.extras import Json

from app.config import Settings
from bench import pg

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bench_bare (
    id bigserial PRIMARY KEY,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
)
"""


def ensure_table(database_url: str) -> None:
    """Create the table if missing, and empty it so each run inserts into the same size."""
    conn = pg.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(TABLE_SQL)
            cur.execute("TRUNCATE bench_bare")
    finally:
        conn.close()


def create_app() -> Flask:
    """The app; its connection is opened on the first request, in the gunicorn worker
    (after the fork), and kept: one per process."""
    database_url = Settings.from_env().database_url
    app = Flask(__name__)
    held: list[Connection] = []

    def connection() -> Connection:
        if not held:
            conn = pg.connect(database_url)
            conn.autocommit = False  # the INSERT and its COMMIT, as the API's transaction does
            held.append(conn)
        return held[0]

    @app.post("/insert")
    def insert() -> tuple[dict[str, Any], int]:
        conn = connection()
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO bench_bare (body) VALUES (%s) RETURNING id", (Json(request.get_json()),))
                (row_id,) = pg.one_row(cur)
            conn.commit()
        except Exception:
            conn.rollback()  # else the connection stays in a failed transaction for every later request
            raise
        return {"id": row_id}, 201

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
