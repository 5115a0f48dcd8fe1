"""Start one RQ worker on the Stepwise queue: `python -m workers.main` (`--check` for a health probe).

SIGTERM is a warm shutdown: the nodes in hand finish, no new job is taken.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import uuid

from rq import Queue
from rq.command import parse_payload
from rq.timeouts import BaseDeathPenalty
from rq.worker import SimpleWorker, Worker
from sqlalchemy import text

from app import logs, metrics
from app.config import Settings
from app.dispatch import STOP_NODES
from app.repositories import workers as workers_repo
from app.runtime import Runtime
from workers import tasks
from workers.engine import STOP_SIGNAL, Engine

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Tells PostgreSQL, every few seconds, that this worker lives and which nodes it holds.
    The scheduler fails the RUNNING nodes of a worker that goes silent, or that no longer
    holds them, so they run again."""

    def __init__(self, engine: Engine, name: str, tracks_current: bool) -> None:
        super().__init__(name="stepwise-heartbeat", daemon=True)
        self.engine, self.worker_name, self.tracks_current = engine, name, tracks_current
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.beat()
            self.stopped.wait(self.engine.rt.settings.worker_heartbeat_seconds)

    def beat(self) -> None:
        held = self.engine.held() if self.tracks_current else []
        try:
            with self.engine.rt.sessions() as session, session.begin():
                workers_repo.beat(
                    session, self.worker_name, socket.gethostname(), os.getpid(), self.tracks_current, held
                )
        except Exception:  # PostgreSQL away: keep trying; the scheduler judges silence
            log.warning("heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        try:
            with self.engine.rt.sessions() as session, session.begin():
                workers_repo.forget(session, self.worker_name)
        except Exception:
            log.warning("could not remove this worker's heartbeat row", exc_info=True)


class _NoJobTimeout(BaseDeathPenalty):
    """RQ's job timeout, off: the engine times each node itself, with SIGALRM."""

    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass


class _EngineMixin:
    tracks_current = False

    def work(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        engine = tasks.engine(self.name)  # type: ignore[attr-defined]
        heartbeat = Heartbeat(engine, self.name, self.tracks_current)  # type: ignore[attr-defined]
        heartbeat.beat()
        heartbeat.start()
        try:
            return super().work(*args, **kwargs)  # type: ignore[misc]
        finally:
            engine.drain()  # a warm shutdown: the pooled nodes finish and are recorded
            heartbeat.stop()

    def handle_payload(self, message):  # type: ignore[no-untyped-def]
        """RQ's commands, and ours: stop these nodes (a cancel)."""
        payload = parse_payload(message)
        if payload.get("command") == STOP_NODES:
            self.stop_nodes([uuid.UUID(n) for n in payload.get("nodes", [])])
        else:
            super().handle_payload(message)  # type: ignore[misc]

    def stop_nodes(self, node_ids: list[uuid.UUID]) -> None:
        raise NotImplementedError


class StepwiseSimpleWorker(_EngineMixin, SimpleWorker):
    """Runs nodes in this process (see docs/PERFORMANCE.md)."""

    tracks_current = True
    death_penalty_class = _NoJobTimeout

    def work(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Here, not in main(): however the worker is started, a stop command's signal must
        # interrupt a handler, not kill the process.
        signal.signal(STOP_SIGNAL, tasks.engine(self.name).raise_if_in_handler)
        return super().work(*args, **kwargs)

    def stop_nodes(self, node_ids: list[uuid.UUID]) -> None:
        tasks.engine(self.name).stop(node_ids)


class StepwiseForkWorker(_EngineMixin, Worker):
    """Forks a child per job (RQ's Worker): for handlers that must be isolated."""

    def stop_nodes(self, node_ids: list[uuid.UUID]) -> None:
        """The child holds the nodes, out of reach: stop it if its job is one of them alone."""
        job = self.get_current_job()
        if job is not None and len(job.args[0]) == 1 and uuid.UUID(str(job.args[0][0][0])) in node_ids:
            self.kill_horse()


WORKER_CLASSES: dict[str, type[StepwiseSimpleWorker] | type[StepwiseForkWorker]] = {
    "simple": StepwiseSimpleWorker,
    "fork": StepwiseForkWorker,
}


def check(rt: Runtime) -> int:
    """For a container health check: can this worker reach PostgreSQL and Redis?"""
    try:
        rt.redis.ping()
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as err:  # any failure to reach them is the answer
        print(f"unhealthy: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


def main() -> None:
    """Run a worker until SIGTERM (warm: it finishes the nodes in hand)."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    if "--check" in sys.argv[1:]:
        sys.exit(check(Runtime.from_settings(settings)))
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    worker_class = WORKER_CLASSES[settings.worker_class]
    rt = tasks.engine().rt
    worker = worker_class([Queue(settings.queue_name, connection=rt.redis)], connection=rt.redis)
    worker.work(logging_level=settings.log_level)


if __name__ == "__main__":
    main()
