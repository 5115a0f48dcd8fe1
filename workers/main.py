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
import time
import uuid
from contextlib import suppress
from types import FrameType
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.command import parse_payload
from rq.exceptions import StopRequested
from rq.timeouts import BaseDeathPenalty
from rq.worker import BaseWorker, SimpleWorker, Worker
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
        self.failing = False  # the last beat did not reach PostgreSQL: said once, not every beat

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
        except Exception as err:  # PostgreSQL away: keep trying; the scheduler judges silence
            if not self.failing:
                log.warning("heartbeat: PostgreSQL unreachable (%s); %d node(s) held meanwhile", err, len(held))
            self.failing = True
            return
        if self.failing:
            log.warning("heartbeat: PostgreSQL answers again; %d node(s) held", len(held))
        self.failing = False

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


REDIS_BACKOFF_SECONDS = (0.5, 10.0)  # the first wait for Redis, and the longest
STEADY_SECONDS = 60.0  # RQ's loop ran this long: the next wait starts short again


# To mypy the mixin extends RQ's BaseWorker (which SimpleWorker and Worker both extend), so
# its overrides and calls to super() are checked; at run time it stays a plain mixin.
if TYPE_CHECKING:
    _MixinBase = BaseWorker
else:
    _MixinBase = object


class _EngineMixin(_MixinBase):
    tracks_current = False
    _asked_to_stop = False

    def work(self, *args: Any, **kwargs: Any) -> bool:
        engine = tasks.engine(self.name)
        heartbeat = Heartbeat(engine, self.name, self.tracks_current)
        heartbeat.beat()
        heartbeat.start()
        try:
            return self._work_through_outages(*args, **kwargs)
        finally:
            engine.drain()  # a warm shutdown: the pooled nodes finish and are recorded
            heartbeat.stop()

    def _work_through_outages(self, *args: Any, **kwargs: Any) -> bool:
        """RQ's work loop, started again whenever it ends without being asked to.

        RQ quits its loop on a Redis error (its suspension check, a job's bookkeeping,
        registering the worker): a worker that quit would leave the queue unserved until
        someone started it again. Here it waits for Redis, with backoff, and goes on; what
        it was running is in PostgreSQL, and its pooled nodes and their recording never
        needed Redis.
        """
        once = any(kwargs.get(k) for k in ("burst", "max_jobs", "max_idle_time"))
        worked, wait = False, REDIS_BACKOFF_SECONDS[0]
        while True:
            started = time.monotonic()
            try:
                worked = super().work(*args, **kwargs) or worked
            except RedisError as err:  # registering its birth with Redis away
                log.warning("worker: Redis is unreachable (%s)", type(err).__name__)
            except StopRequested:
                return worked
            if once or self._asked_to_stop:
                return worked
            if time.monotonic() - started > STEADY_SECONDS:
                wait = REDIS_BACKOFF_SECONDS[0]
            try:
                wait = self._wait_for_redis(wait)
            except StopRequested:  # SIGTERM while waiting
                return worked
            if self._asked_to_stop:
                return worked
            log.warning("worker: Redis answers again; taking jobs")

    def _wait_for_redis(self, wait: float) -> float:
        """Until Redis answers (or a stop is asked), then end this worker's last registration,
        which may linger, so that RQ does not take the worker for a twin of itself. The wait
        to start with next time."""
        log.warning("worker: RQ's loop ended (Redis away?); starting it again in %.1f s", wait)
        while True:
            time.sleep(wait)
            wait = min(wait * 2, REDIS_BACKOFF_SECONDS[1])
            if self._asked_to_stop:
                return wait
            try:
                self.connection.ping()
                self.register_death()
                return wait
            except RedisError as err:
                log.warning("worker: Redis is unreachable (%s); trying again in %.1f s", type(err).__name__, wait)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: remembered here, since RQ only remembers it while a job runs."""
        self._asked_to_stop = True
        return super().request_stop(signum, frame)

    def set_shutdown_requested_date(self) -> None:
        # Called from the signal handler, inside whatever runs: with Redis away, it must
        # not raise there (into a node's handler).
        with suppress(RedisError):
            super().set_shutdown_requested_date()

    def teardown(self) -> None:
        """RQ's, tolerating a Redis that is away: then the registration expires on its own
        and the pubsub thread is stopped without a word to Redis."""
        try:
            super().teardown()
        except RedisError:
            log.warning("worker: could not unregister from Redis; its registration will expire")
            thread = getattr(self, "pubsub_thread", None)
            if thread is not None:
                thread.stop()
                thread.join(timeout=1)
            if self.pubsub is not None:
                with suppress(Exception):
                    self.pubsub.close()

    def handle_payload(self, message: dict[str, Any]) -> None:
        """RQ's commands, and ours: stop these nodes (a cancel)."""
        payload = parse_payload(message)
        if payload.get("command") == STOP_NODES:
            self.stop_nodes([uuid.UUID(n) for n in payload.get("nodes", [])])
        else:
            super().handle_payload(message)

    def stop_nodes(self, node_ids: list[uuid.UUID]) -> None:
        raise NotImplementedError


class StepwiseSimpleWorker(_EngineMixin, SimpleWorker):
    """Runs nodes in this process (see docs/PERFORMANCE.md)."""

    tracks_current = True
    death_penalty_class = _NoJobTimeout

    def work(self, *args: Any, **kwargs: Any) -> bool:
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
    # RQ's connection of its own: RQ sets its read timeout past its blocking dequeue's,
    # which the engine's calls (enqueue, the circuit breaker) must not inherit.
    connection = Redis.from_url(
        settings.redis_url, socket_connect_timeout=5, socket_keepalive=True, health_check_interval=30
    )
    tasks.engine()  # built before the first job: its handlers' modules loaded, its pool ready
    worker = worker_class([Queue(settings.queue_name, connection=connection)], connection=connection)
    worker.work(logging_level=settings.log_level)


if __name__ == "__main__":
    main()
