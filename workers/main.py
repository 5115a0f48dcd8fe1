"""Start one RQ worker on the Stepwise queue: `python -m workers.main` (`--check` for a health probe).

SIGTERM is a warm shutdown: the node in hand finishes, no new one is taken.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading

from rq import Queue
from rq.worker import SimpleWorker, Worker
from sqlalchemy import text

from app import logs, metrics
from app.config import Settings
from app.repositories import workers as workers_repo
from app.runtime import Runtime
from workers import tasks

log = logging.getLogger(__name__)


class Heartbeat(threading.Thread):
    """Tells PostgreSQL, every few seconds, that this worker lives and what it runs. The
    scheduler fails the RUNNING nodes of a worker that goes silent, so they run again."""

    def __init__(self, rt: Runtime, name: str, tracks_current: bool) -> None:
        super().__init__(name="stepwise-heartbeat", daemon=True)
        self.rt, self.worker_name, self.tracks_current = rt, name, tracks_current
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.beat()
            self.stopped.wait(self.rt.settings.worker_heartbeat_seconds)

    def beat(self) -> None:
        current = tasks.current.node_execution_id if self.tracks_current else None
        try:
            with self.rt.sessions() as session, session.begin():
                workers_repo.beat(
                    session, self.worker_name, socket.gethostname(), os.getpid(), self.tracks_current, current
                )
        except Exception:  # PostgreSQL away: keep trying; the scheduler judges silence
            log.warning("heartbeat failed", exc_info=True)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        try:
            with self.rt.sessions() as session, session.begin():
                workers_repo.forget(session, self.worker_name)
        except Exception:
            log.warning("could not remove this worker's heartbeat row", exc_info=True)


class _HeartbeatMixin:
    rt: Runtime
    tracks_current = False

    def work(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        heartbeat = Heartbeat(self.rt, self.name, self.tracks_current)  # type: ignore[attr-defined]
        heartbeat.beat()
        heartbeat.start()
        try:
            return super().work(*args, **kwargs)  # type: ignore[misc]
        finally:
            heartbeat.stop()


class StepwiseSimpleWorker(_HeartbeatMixin, SimpleWorker):
    """Runs nodes in this process, one at a time (see docs/PERFORMANCE.md)."""

    tracks_current = True

    def work(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Here, not in main(): however the worker is started, a stop-job command's
        # signal must interrupt a handler, not kill the process.
        signal.signal(tasks.STOP_SIGNAL, tasks.current.raise_if_in_handler)
        return super().work(*args, **kwargs)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """RQ calls this for a stop-job command aimed at our current job: there is no
        child process to kill, so interrupt the handler instead."""
        tasks.current.interrupt()


class StepwiseForkWorker(_HeartbeatMixin, Worker):
    """Forks a child per node (RQ's Worker); stop-job kills the child."""


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
    """Run a worker until SIGTERM (warm: it finishes the node in hand)."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    rt = tasks.runtime()
    if "--check" in sys.argv[1:]:
        sys.exit(check(rt))
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    worker_class = WORKER_CLASSES[settings.worker_class]
    worker = worker_class([Queue(settings.queue_name, connection=rt.redis)], connection=rt.redis)
    worker.rt = rt
    worker.work(logging_level=settings.log_level)


if __name__ == "__main__":
    main()
