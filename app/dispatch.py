"""Hands ready nodes to RQ, stops running ones, and tells which jobs RQ has lost.

Called only after the transaction that decided it commits: PostgreSQL is the
truth, Redis the transport.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from app import correlation

log = logging.getLogger(__name__)

RUN_NODE = "workers.tasks.run_node"
# RQ keeps a failed job's record this long; PostgreSQL keeps the node's own history.
FAILED_JOB_TTL_SECONDS = 24 * 3600
# States in which RQ will still run a job (or is running it).
_ALIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


@dataclass(frozen=True)
class NodeJob:
    job_id: str  # as stored in node_executions.rq_job_id when the node was queued
    node_execution_id: uuid.UUID
    attempt: int
    timeout_seconds: int | None  # None: the default


class Dispatcher:
    def __init__(self, redis: Redis, queue_name: str, default_timeout_seconds: int) -> None:
        self.redis = redis
        self.queue = Queue(queue_name, connection=redis)
        self.default_timeout_seconds = default_timeout_seconds

    def enqueue(self, jobs: Sequence[NodeJob]) -> None:
        """Enqueue in one pipelined round trip."""
        if not jobs:
            return
        # The request behind these nodes, so their workers' log lines and rows carry it.
        meta = {"correlation_id": cid} if (cid := correlation.correlation_id.get()) else None
        self.queue.enqueue_many(
            [
                Queue.prepare_data(
                    RUN_NODE,
                    args=(str(job.node_execution_id), job.attempt),
                    job_id=job.job_id,
                    timeout=job.timeout_seconds or self.default_timeout_seconds,
                    result_ttl=0,
                    failure_ttl=FAILED_JOB_TTL_SECONDS,
                    meta=meta,
                )
                for job in jobs
            ]
        )

    def stop(self, job_ids: Sequence[str]) -> None:
        """Tell the workers running these jobs to stop them (RQ's stop-job command).
        Best effort: a job that already ended, or a Redis that is down, is not an error,
        since PostgreSQL already records the node as cancelled."""
        for job_id in job_ids:
            try:
                send_stop_job_command(self.redis, job_id)
            except (InvalidJobOperation, NoSuchJobError):
                continue  # not running (any more)
            except RedisError:
                log.warning("could not ask the worker to stop job %s", job_id, exc_info=True)

    def lost(self, job_ids: Sequence[str], live_workers: Collection[str] | None = None) -> set[str]:
        """The job ids RQ no longer has, has given up on (failed, stopped, cancelled), or
        marks started by a worker that is not among `live_workers` (when given)."""
        if not job_ids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(Job.key_for(job_id), ["status", "worker_name"])
        lost = set()
        for job_id, (status, worker) in zip(job_ids, pipe.execute(), strict=True):
            status, worker = _decode(status), _decode(worker)
            if status not in _ALIVE:
                lost.add(job_id)
            elif status == JobStatus.STARTED and live_workers is not None and worker not in live_workers:
                lost.add(job_id)  # dequeued by a worker that died before (or while) running it
        return lost


def _decode(status: bytes | str | None) -> str | None:
    return status.decode() if isinstance(status, bytes) else status
