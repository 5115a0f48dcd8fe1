"""Plain RQ jobs for the baseline: the same workers run these and the engine's nodes."""

from __future__ import annotations

from rq import Queue, get_current_job
from rq.job import Job


def _job() -> Job:
    """The job running this function (these run only under an RQ worker)."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("not running as an RQ job")
    return job


def count(counter_key: str) -> None:
    """A no-op that ticks a counter, so the bench sees when the last job is done."""
    _job().connection.incr(counter_key)


def hop(counter_key: str, remaining: int) -> None:
    """One link of a chain: enqueue the next link, as a DAG hands a node to its child."""
    job = _job()
    if remaining == 0:
        job.connection.incr(counter_key)
        return
    Queue(job.origin, connection=job.connection).enqueue(hop, counter_key, remaining - 1, result_ttl=0)
