"""The plain-RQ baseline: bench/jobs.py's no-op jobs on the same worker processes as the engine."""

from __future__ import annotations

import time
import uuid

from redis import Redis
from rq import Queue

from bench import jobs
from bench.stack import BenchError


def _wait_counter(redis: Redis, key: str, target: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while int(redis.get(key) or 0) < target:
        if time.monotonic() > deadline:
            raise BenchError(f"plain RQ run did not finish ({redis.get(key)!r}/{target})")
        time.sleep(0.005)
    redis.delete(key)


def jobs_per_second(queue: Queue, count: int) -> float:
    """`count` independent no-op jobs enqueued at once: jobs per second until the last is done."""
    key = f"bench:{uuid.uuid4().hex}"
    start = time.perf_counter()
    queue.enqueue_many([Queue.prepare_data(jobs.count, args=(key,), result_ttl=0) for _ in range(count)])
    _wait_counter(queue.connection, key, count)
    return count / (time.perf_counter() - start)


def ms_per_hop(queue: Queue, length: int) -> float:
    """A chain of `length` jobs, each enqueuing the next: milliseconds per hop."""
    key = f"bench:{uuid.uuid4().hex}"
    start = time.perf_counter()
    queue.enqueue(jobs.hop, key, length - 1, result_ttl=0)
    _wait_counter(queue.connection, key, 1)
    return (time.perf_counter() - start) * 1000 / length
