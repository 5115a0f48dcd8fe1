"""For operators: /health (alive), /ready (PostgreSQL, Redis and the schema in order), /metrics."""

from __future__ import annotations

from functools import cache
from typing import Any

from alembic.script import ScriptDirectory
from flask import Blueprint, Response
from sqlalchemy import text

from app import metrics, migrate
from app.api import runtime

blp = Blueprint("ops", __name__)


@blp.get("/health")
def health() -> tuple[dict[str, Any], int]:
    """Liveness: the process answers. Cheap on purpose; /ready checks the dependencies.
    (`health` is for peer-a's scripts, which look for the word "healthy".)"""
    return {"status": "ok", "health": "healthy"}, 200


@cache
def _head(database_url: str) -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config(database_url)).get_current_head()


@blp.get("/ready")
def ready() -> tuple[dict[str, Any], int]:
    """Readiness: 200 when PostgreSQL answers with the schema at head and Redis answers,
    else 503 naming each part that is not."""
    rt = runtime()
    checks: dict[str, str] = {}
    try:
        with rt.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        checks["database"] = "ok"
        head = _head(rt.settings.database_url)
        checks["migrations"] = "ok" if version == head else f"at {version}, head is {head}: run flask db upgrade"
    except Exception as err:  # whatever fails to reach it is the answer
        checks["database"] = f"down: {type(err).__name__}"
        checks["migrations"] = "unknown"
    try:
        rt.redis.ping()
        checks["redis"] = "ok"
    except Exception as err:
        checks["redis"] = f"down: {type(err).__name__}"
    ok = all(value == "ok" for value in checks.values())
    return {"status": "ready" if ok else "unavailable", **checks}, 200 if ok else 503


@blp.get("/metrics", endpoint="metrics")
def metrics_endpoint() -> Response:
    """Prometheus text format: every process's series, plus queue depth, scheduler lag
    and circuit states read now."""
    body, content_type = metrics.exposition(runtime())
    return Response(body, content_type=content_type)
