"""Hands ready nodes to RQ, stops running ones, and tells which jobs RQ has lost.

A node does not cost an RQ job of its own: ready nodes that run the same way go
out together, a few jobs carrying many nodes each, enough jobs to keep every
worker busy. Called only after the transaction that decided it commits:
PostgreSQL is the truth, Redis the transport.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.command import send_command
from rq.job import Job, JobStatus

from app import correlation
from app.handlers.registry import RunMode

log = logging.getLogger(__name__)

RUN_NODES = "workers.tasks.run_nodes"
STOP_NODES = "stop-nodes"  # our command on a worker's RQ channel
# RQ keeps a failed job's record this long; PostgreSQL keeps the node's own history.
FAILED_JOB_TTL_SECONDS = 24 * 3600
# States in which RQ will still run a job (or is running it).
_ALIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
# Marks the Redis data set: when it is gone, Redis was flushed or restarted empty.
EPOCH_KEY = "stepwise:epoch"
_WORKERS_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class NodeJob:
    """One RQ job: the node attempts it carries, and how the worker runs them."""

    job_id: str  # as stored in node_executions.rq_job_id for each of its nodes
    mode: RunMode
    nodes: tuple[tuple[uuid.UUID, int], ...]  # (node execution id, attempt)

    def payload(self) -> list[list[str | int]]:
        return [[node_id.hex, attempt] for node_id, attempt in self.nodes]


def parse_payload(payload: Sequence[Sequence[str | int]]) -> list[tuple[uuid.UUID, int]]:
    """A job's nodes, as NodeJob.payload wrote them."""
    return [(uuid.UUID(str(node_id)), int(attempt)) for node_id, attempt in payload]


def single_job_id(node_execution_id: uuid.UUID, attempt: int) -> str:
    """The id of a job carrying one node attempt (the queue statement's default)."""
    return f"node-{node_execution_id.hex}-{attempt}"


class Dispatcher:
    def __init__(self, redis: Redis, queue_name: str, batch_size: int = 200, concurrency: int = 32) -> None:
        self.redis = redis
        self.queue = Queue(queue_name, connection=redis)
        self.batch_size = max(1, batch_size)
        self.concurrency = max(1, concurrency)
        self._workers = (0, float("-inf"))  # (count, when read)
        self._lock = threading.Lock()

    def parallelism(self) -> int:
        """How many workers serve the queue (read from RQ at most every few seconds; 1
        when Redis cannot say)."""
        with self._lock:
            count, read_at = self._workers
            if time.monotonic() - read_at < _WORKERS_CACHE_SECONDS:
                return max(count, 1)
        try:
            count = Worker.count(queue=self.queue)
        except RedisError:
            count = 1
        with self._lock:
            self._workers = (count, time.monotonic())
        return max(count, 1)

    def share(self, count: int, mode: RunMode) -> int:
        """How many of `count` ready nodes of this mode one job should carry: a fair
        share for each worker, at most a batch (and a worker's pool for CONCURRENT)."""
        if mode == RunMode.EXCLUSIVE:
            return 1
        limit = self.batch_size if mode == RunMode.INLINE else min(self.batch_size, self.concurrency)
        return max(1, min(limit, math.ceil(count / self.parallelism())))

    def plan(self, ready: Mapping[str, RunMode]) -> dict[str, str]:
        """Node id -> the id of the job that will carry it, for nodes about to be queued.
        A node alone in its job is left out: its job id is its own (single_job_id)."""
        by_mode: dict[RunMode, list[str]] = defaultdict(list)
        for node_id, mode in ready.items():
            by_mode[mode].append(node_id)
        planned: dict[str, str] = {}
        for mode, node_ids in by_mode.items():
            size = self.share(len(node_ids), mode)
            for start in range(0, len(node_ids), size):
                chunk = node_ids[start : start + size]
                if len(chunk) > 1:
                    job_id = f"batch-{uuid.uuid4().hex}"
                    planned.update(dict.fromkeys(chunk, job_id))
        return planned

    def enqueue(self, jobs: Sequence[NodeJob]) -> None:
        """Enqueue in one pipelined round trip, after the commit that queued the nodes.
        If Redis is down the nodes stay QUEUED in PostgreSQL, which is the truth, and the
        scheduler enqueues them again once their grace has passed: not an error here."""
        if not jobs:
            return
        # The request behind these nodes, so their workers' log lines and rows carry it.
        meta = {"correlation_id": cid} if (cid := correlation.correlation_id.get()) else None
        try:
            self._enqueue(jobs, meta)
        except RedisError:
            log.exception("could not enqueue %d job(s); their nodes stay QUEUED for recovery", len(jobs))

    def _enqueue(self, jobs: Sequence[NodeJob], meta: dict[str, str] | None) -> None:
        self.queue.enqueue_many(
            [
                Queue.prepare_data(
                    RUN_NODES,
                    args=(job.payload(), str(job.mode)),
                    job_id=job.job_id,
                    # The worker times each node itself (its own timeout_seconds).
                    timeout=-1,
                    result_ttl=0,
                    failure_ttl=FAILED_JOB_TTL_SECONDS,
                    meta=meta,
                )
                for job in jobs
            ]
        )

    def stop(self, held: Collection[tuple[str | None, uuid.UUID]]) -> None:
        """Tell the workers holding these nodes to stop them, on each worker's RQ channel.
        Best effort: a node that already ended, or a Redis that is down, is not an error,
        since PostgreSQL already records the node as cancelled."""
        by_worker: dict[str, list[str]] = defaultdict(list)
        for worker_name, node_id in held:
            if worker_name:
                by_worker[worker_name].append(node_id.hex)
        for worker_name, node_ids in by_worker.items():
            try:
                send_command(self.redis, worker_name, STOP_NODES, nodes=node_ids)
            except RedisError:
                log.warning("could not ask worker %s to stop %d node(s)", worker_name, len(node_ids), exc_info=True)

    def lost(self, job_ids: Collection[str], live_workers: Collection[str] | None = None) -> set[str]:
        """The job ids RQ no longer has, has given up on (failed, stopped, cancelled), or
        marks started by a worker that is not among `live_workers` (when given)."""
        unique = sorted(set(job_ids))
        if not unique:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for job_id in unique:
            pipe.hmget(Job.key_for(job_id), ["status", "worker_name"])
        lost = set()
        for job_id, (status, worker) in zip(unique, pipe.execute(), strict=True):
            status, worker = _decode(status), _decode(worker)
            if status not in _ALIVE:
                lost.add(job_id)
            elif status == JobStatus.STARTED and live_workers is not None and worker not in live_workers:
                lost.add(job_id)  # dequeued by a worker that died before (or while) running it
        return lost

    def epoch(self) -> str:
        """The mark of Redis's current data set: a new one after a flush or an empty restart."""
        self.redis.set(EPOCH_KEY, uuid.uuid4().hex, nx=True)
        return _decode(self.redis.get(EPOCH_KEY)) or ""


def _decode(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
