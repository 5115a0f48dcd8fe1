"""Plain RQ jobs for the baseline: the same workers run these and the engine's nodes."""

from __future__ import annotations

from rq import Queue, get_current_job


def count(counter_key: str) -> None:
    """A no-op that ticks a counter, so the bench sees when the last job is done."""
    get_current_job().connection.incr(counter_key)


def hop(counter_key: str, remaining: int) -> None:
    """One link of a chain: enqueue the next link, as a DAG hands a node to its child."""
    job = get_current_job()
    if remaining == 0:
        job.connection.incr(counter_key)
        return
    Queue(job.origin, connection=job.connection).enqueue(hop, counter_key, remaining - 1, result_ttl=0)
