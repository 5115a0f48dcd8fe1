"""The longer faults, for `make chaos` (docs/RELIABILITY.md has a run's figures): Redis
flushed, PostgreSQL crashed (`-m immediate`), restarted with `-m fast` and stopped for
10 s, while HTTP nodes run and clients call the API. (`make chaos` runs the short fault
tests, test_worker_killed.py and test_redis_and_edge.py, too.)"""

from __future__ import annotations

import time

import pytest

from tests.faults.checks import assert_recovered, report, through
from tests.faults.stack import Stack

pytestmark = pytest.mark.chaos


def test_redis_flushed_while_nodes_run(stack: Stack) -> None:
    run, callers, recovered = through(stack, stack.redis.flushall)
    assert_recovered(stack, run, callers)
    report("Redis FLUSHALL", stack, run, callers, recovered)


def test_postgresql_restarted_fast_while_effects_are_in_flight(stack: Stack) -> None:
    run, callers, recovered = through(stack, lambda: stack.postgres.restart("fast"))
    assert_recovered(stack, run, callers)
    report("PostgreSQL restart -m fast", stack, run, callers, recovered)


def test_postgresql_stopped_for_10_s_while_effects_are_in_flight(stack: Stack) -> None:
    def outage() -> None:
        stack.postgres.stop("fast")
        time.sleep(10)
        stack.postgres.start()

    run, callers, recovered = through(stack, outage)
    assert_recovered(stack, run, callers)
    assert callers.statuses[503] > 0  # the clients were told, not left hanging or given a 500
    report("PostgreSQL stopped 10 s", stack, run, callers, recovered)


def test_postgresql_crashed_and_restarted_while_effects_are_in_flight(stack: Stack) -> None:
    # `pg_ctl restart -m immediate`: a crash, then recovery. What a worker finished while
    # PostgreSQL was away is recorded once it is back, not failed as worker_lost and sent again.
    run, callers, recovered = through(stack, lambda: stack.postgres.restart("immediate"))
    assert_recovered(stack, run, callers)
    report("PostgreSQL restart -m immediate", stack, run, callers, recovered)
