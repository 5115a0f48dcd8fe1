"""The scheduler: starts what waits on time and recovers what a dead worker or a lost
Redis left behind. PostgreSQL says what should be happening; each tick makes Redis
and the workers agree, one guarded transition at a time.

Run it with `flask scheduler`. Several may run: one holds a PostgreSQL advisory lock
and works, the others wait to take over if its connection goes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.dispatch import Dispatcher, NodeJob
from app.domain.states import NODE_WAITING, ExecutionStatus
from app.handlers import registry
from app.repositories import claims, node_moves, recovery
from app.repositories import executions as executions_repo
from app.repositories import workers as workers_repo
from app.runtime import Runtime
from app.services import lifecycle, node_runs
from app.services.progress import node_jobs

log = logging.getLogger(__name__)

LEADER_LOCK = 7_465_726_301  # pg_advisory_lock key: "the scheduler"
BATCH = 200


@dataclass(frozen=True)
class SchedulerSettings:
    interval_seconds: float = 1.0
    queued_grace_seconds: int = 5
    worker_lost_seconds: int = 6
    retention_days: int = 7
    leader_lock: int = LEADER_LOCK  # schedulers sharing a key share one leader
    # Every QUEUED node's job is looked for this often, a page per tick (see _requeue_lost_jobs).
    queued_sweep_seconds: float = 300.0


_START = (datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))
PURGE_BATCH = 20  # executions per purge transaction: each takes its nodes, logs and letters
PURGE_BUDGET_SECONDS = 0.5


@dataclass
class SchedulerState:
    """What a scheduler remembers between ticks: where its scans stopped, so a long
    backlog is looked through a page per tick, and since when it leads."""

    leader_since: float = float("-inf")
    # QUEUED nodes are each looked for in Redis once, when they pass their grace: up to here.
    queued_checked: tuple[datetime, uuid.UUID] = _START
    # A sweep of every QUEUED node: where it stands (None: none running), and the next one.
    sweep_after: tuple[datetime, uuid.UUID] | None = _START
    next_sweep: float = float("-inf")
    redis_epoch: str | None = None
    running_after: tuple[datetime, uuid.UUID] = _START
    live_workers: set[str] = field(default_factory=set)  # as of the last tick: one gone starts a sweep


@dataclass
class TickReport:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, name: str, count: int = 1) -> None:
        self.counts[name] += count


def tick(rt: Runtime, settings: SchedulerSettings, state: SchedulerState | None = None) -> dict[str, int]:
    """One pass over every kind of waiting or lost work; what was done, by kind."""
    state = state or SchedulerState()
    report = TickReport()
    with rt.sessions() as session:
        for name, due, act in (
            ("started", executions_repo.due_to_start, lifecycle.start_scheduled),
            ("resumed", executions_repo.due_to_retry, lifecycle.resume_due),
            ("timed_out", executions_repo.past_deadline, lifecycle.expire_deadline),
        ):
            _each_execution(session, rt.dispatcher, report, name, due, act)
        _queue_due_retries(session, rt.dispatcher, report)
        _requeue_lost_jobs(session, rt.dispatcher, settings, state, report)
        # After leading for a while only: workers whose heartbeats could not reach a
        # PostgreSQL that was away must have had the chance to report again.
        if time.monotonic() - state.leader_since >= settings.worker_lost_seconds:
            _fail_lost_nodes(session, rt.dispatcher, settings, state, report)
        _purge(session, settings, report)
    return {k: v for k, v in report.counts.items() if v}


def _purge(session: Session, settings: SchedulerSettings, report: TickReport) -> None:
    """Delete expired history in small transactions, within a time budget per tick."""
    deadline = time.monotonic() + PURGE_BUDGET_SECONDS
    while time.monotonic() < deadline:
        try:
            with session.begin():
                purged, workflows = executions_repo.purge_finished_before(session, settings.retention_days, PURGE_BATCH)
        except IntegrityError:  # an ad-hoc workflow got an execution meanwhile: kept, next tick
            log.info("scheduler: a purge met a new execution; trying again next tick")
            break
        report.add("purged", purged)
        report.add("purged_workflows", workflows)
        if purged < PURGE_BATCH:
            break
    with session.begin():
        workers_repo.forget_silent(session, 24 * 3600)


def _each_execution(
    session: Session,
    dispatcher: Dispatcher,
    report: TickReport,
    name: str,
    due: Callable[[Session, int], list[uuid.UUID]],
    act: Callable[[Session, Dispatcher, uuid.UUID], bool],
) -> None:
    with session.begin():
        ids = due(session, BATCH)
    for execution_id in ids:
        try:
            report.add(name, int(act(session, dispatcher, execution_id)))
        except Exception:  # one bad execution must not stop the others
            log.exception("scheduler: %s of execution %s failed", name, execution_id)


def _queue_due_retries(session: Session, dispatcher: Dispatcher, report: TickReport) -> None:
    """UP_FOR_RETRY nodes whose backoff is over, DEFERRED ones whose wait is: queue their next run."""
    with session.begin():
        due = recovery.due_wakeups(session, BATCH)
    by_execution: dict[uuid.UUID, list[recovery.WaitingNode]] = defaultdict(list)
    for node in due:
        by_execution[node.execution_id].append(node)
    for execution_id, waiting in by_execution.items():
        modes = {n.node_id: registry.mode(n.handler) for n in waiting}
        with session.begin():
            if executions_repo.lock(session, execution_id) != ExecutionStatus.RUNNING:
                continue  # cancelled or timed out meanwhile: its nodes are settled already
            queued = node_moves.queue(
                session, execution_id, list(modes), expected=NODE_WAITING, job_ids=dispatcher.plan(modes)
            )
            jobs = node_jobs(queued, modes)
        dispatcher.enqueue(jobs)
        report.add("retried", len(queued))


def _requeue_lost_jobs(
    session: Session, dispatcher: Dispatcher, settings: SchedulerSettings, state: SchedulerState, report: TickReport
) -> None:
    """QUEUED nodes whose RQ job is gone (Redis restarted or flushed, a crash between
    commit and enqueue, a worker that died after taking it): enqueue the same job again.
    A duplicate is harmless: the claim lets one delivery through.

    A healthy backlog is not rescanned every tick: each QUEUED node is looked for once,
    when it passes its grace; all of them again when Redis's data set changed (a flush, an
    empty restart), and every `queued_sweep_seconds`, a page per tick.
    """
    try:
        epoch = dispatcher.epoch()
        with session.begin():
            live = recovery.live_workers(session, settings.worker_lost_seconds)
        gone, state.live_workers = state.live_workers - live, live
        if epoch != state.redis_epoch:
            if state.redis_epoch is not None:
                log.warning("scheduler: Redis lost its data; every QUEUED node's job is looked for")
            state.redis_epoch, state.sweep_after = epoch, _START
        elif gone and state.sweep_after is None:
            # A job it had taken still waits on it, and its nodes passed their grace while
            # it was thought alive: look again at every QUEUED node, now it is not.
            log.warning("scheduler: worker(s) %s went silent; every QUEUED node's job is looked for", sorted(gone))
            state.sweep_after = _START
        elif state.sweep_after is None and time.monotonic() >= state.next_sweep:
            state.sweep_after = _START
        with session.begin():
            crossed = recovery.queued_between(session, state.queued_checked, settings.queued_grace_seconds, BATCH)
            swept = recovery.queued_between(session, state.sweep_after, None, BATCH) if state.sweep_after else []
        candidates = {n.id: n for n in crossed + swept if n.rq_job_id}
        lost = dispatcher.lost([n.rq_job_id for n in candidates.values() if n.rq_job_id], live_workers=live)
        report.add("looked_up", len(candidates))
    except RedisError:
        log.warning("scheduler: Redis unreachable; lost jobs are looked for again next tick")
        return
    if crossed:
        state.queued_checked = (crossed[-1].queued_at, crossed[-1].id)  # type: ignore[assignment]
    if state.sweep_after is not None:
        if len(swept) == BATCH:
            state.sweep_after = (swept[-1].queued_at, swept[-1].id)  # type: ignore[assignment]
        else:
            state.sweep_after, state.next_sweep = None, time.monotonic() + settings.queued_sweep_seconds
    by_job: dict[str, list[recovery.WaitingNode]] = defaultdict(list)
    for node in candidates.values():
        if node.rq_job_id in lost:
            by_job[node.rq_job_id].append(node)
    for job_id, nodes in by_job.items():
        with session.begin():
            touched = recovery.touch_queued(session, [(n.id, n.attempt) for n in nodes], "job missing in Redis")
        carried = [n for n in nodes if n.id in touched]
        if carried:
            mode = registry.mode(carried[0].handler)
            dispatcher.enqueue([NodeJob(job_id, mode, tuple((n.id, n.attempt) for n in carried))])
            report.add("requeued", len(carried))


def _fail_lost_nodes(
    session: Session, dispatcher: Dispatcher, settings: SchedulerSettings, state: SchedulerState, report: TickReport
) -> None:
    """RUNNING nodes whose worker is gone, no longer holds them, or (a forking worker,
    which cannot say what it holds) whose RQ job has failed or vanished: the attempt
    failed, retryably; the next runs elsewhere, and a late result from the old one is
    dropped by the attempt guard."""
    with session.begin():
        running = recovery.running_since(session, settings.worker_lost_seconds, BATCH, state.running_after)
    state.running_after = (running[-1].started_at, running[-1].id) if len(running) == BATCH else _START
    suspects = [n for n in running if n.worker_alive and not n.tracks_current and n.rq_job_id]
    try:
        vanished = dispatcher.lost([n.rq_job_id for n in suspects if n.rq_job_id])
    except RedisError:
        vanished = set()
    for candidate in running:
        if candidate.worker_alive and (
            candidate.worker_holds_it if candidate.tracks_current else candidate.rq_job_id not in vanished
        ):
            continue
        with session.begin():
            node = claims.running(session, candidate.id, candidate.attempt)  # the attempt judged, no newer one
        if node is None:
            continue
        failure = node_runs.Failure(
            "WorkerLost",
            "worker_lost",
            f"the worker running attempt {node.attempt} stopped running it (no heartbeat for "
            f"{settings.worker_lost_seconds}s, or its job was lost)",
            retryable=True,
        )
        try:
            report.add("lost", int(node_runs.fail_node(session, dispatcher, node, failure)))
        except Exception:
            log.exception("scheduler: recovering lost node %s failed", candidate.id)


def run(rt: Runtime, settings: SchedulerSettings, stop: threading.Event) -> None:
    """Tick every interval while holding the leader lock, until `stop` is set.

    The lock lives on a connection of its own, in autocommit (so it never sits idle in
    a transaction); any error drops that connection, which releases the lock, and the
    loop starts over.
    """
    while not stop.is_set():
        leader = None
        try:
            leader = rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if not leader.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": settings.leader_lock}):
                leader.close()
                stop.wait(settings.interval_seconds * 5)
                continue
            log.info("scheduler: leading")
            state = SchedulerState(leader_since=time.monotonic())
            while not stop.is_set():
                done = tick(rt, settings, state)
                if done:
                    log.info("scheduler: %s", done)
                stop.wait(settings.interval_seconds)
                leader.execute(text("SELECT 1"))  # still connected, so still the leader
            leader.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": settings.leader_lock})
            leader.close()
        except Exception:  # whatever failed, let go of the lock and start over
            log.exception("scheduler: tick failed; letting go of the lock and trying again")
            if leader is not None:
                with contextlib.suppress(Exception):
                    leader.invalidate()
                    leader.close()
            stop.wait(settings.interval_seconds * 5)
