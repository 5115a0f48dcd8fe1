"""The RQ job: run the node attempts it carries. Thin on purpose; the engine runs them and
PostgreSQL decides what counts."""

from __future__ import annotations

import os
import socket

from rq import get_current_job

from app import correlation
from app.config import Settings
from app.dispatch import parse_payload
from app.handlers import load_extensions
from app.handlers.clients import HandlerClients
from app.handlers.registry import RunMode
from app.runtime import Runtime
from workers.engine import Engine

_engine: Engine | None = None
_engine_pid: int | None = None


def engine(worker_name: str | None = None) -> Engine:
    """This process's engine, built on first use (and again in a forked child)."""
    global _engine, _engine_pid
    if _engine is None or _engine_pid != os.getpid():
        settings = Settings.from_env()
        load_extensions(settings.handler_module_names)
        rt = Runtime.from_settings(settings)
        clients = HandlerClients.from_settings(settings, rt.redis)
        _engine = Engine(rt, clients, worker_name or socket.gethostname())
        _engine_pid = os.getpid()
    elif worker_name:
        _engine.worker_name = worker_name  # the RQ worker, named once it exists
    return _engine


def run_nodes(payload: list[list[str | int]], mode: str) -> None:
    """Claim the nodes (a duplicate delivery stops here), run them, record their outcomes."""
    job = get_current_job()
    worker_name = (job.worker_name if job else None) or socket.gethostname()
    cid = (job.meta or {}).get("correlation_id") if job else None
    current = engine(worker_name)
    with correlation.bound(cid):
        current.run_job(job.id if job else "", RunMode(mode), parse_payload(payload))
    if current.rt.settings.worker_class == "fork":
        current.drain()  # a forked child ends with its job: its pooled nodes first
