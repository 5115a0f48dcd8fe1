"""Faults on the real stack, short enough for `make test` (the longer ones: test_chaos.py,
`make chaos`): a worker killed, Redis restarted empty, PostgreSQL crashed, each while
HTTP nodes run. Each ends with every execution COMPLETED, no process left dead, every
effect made under one key (and not sent twice unless its worker died), and no 5xx but
503 for the clients calling meanwhile."""

from __future__ import annotations

import time

from tests.faults.checks import assert_recovered, through
from tests.faults.stack import Stack


def test_a_worker_killed_mid_node_has_its_nodes_run_again_within_10_s_under_the_same_keys(stack: Stack) -> None:
    killed_at: list[float] = []

    def kill_a_worker() -> None:
        killed_at.append(time.monotonic())
        stack.kill("worker-1")
        stack.restart("worker-1")  # as its supervisor would

    run, callers, recovered = through(stack, kill_a_worker)
    assert_recovered(stack, run, callers, resent_allowed=True)
    arrivals = stack.effects.arrivals
    resent = [key for key in run.expected_keys() if len(arrivals[key]) > 1]
    assert resent, "the killed worker held calls in flight: they must have been made again"
    # Loss is noticed by heartbeat (WORKER_LOST_SECONDS 6, beats every 2 s), not after 30 s.
    assert max(arrivals[key][1] - killed_at[0] for key in resent) < 10
    print(f"\nFAULT kill -9 worker: {len(resent)} call(s) made again; all done {recovered:.1f} s after")


def test_redis_killed_and_restarted_empty_while_nodes_run(stack: Stack) -> None:
    def restart_redis_empty() -> None:
        stack.redis.kill()
        time.sleep(1)
        stack.redis.start()

    run, callers, recovered = through(stack, restart_redis_empty)
    assert_recovered(stack, run, callers)
    print(f"\nFAULT Redis restarted empty: all done {recovered:.1f} s after")


def test_postgresql_crashed_and_restarted_while_effects_are_in_flight(stack: Stack) -> None:
    # `pg_ctl restart -m immediate`: a crash, then recovery. What a worker finished while
    # PostgreSQL was away is recorded once it is back, not failed as worker_lost and sent again.
    run, callers, recovered = through(stack, lambda: stack.postgres.restart("immediate"))
    assert_recovered(stack, run, callers)
    print(f"\nFAULT PostgreSQL restart -m immediate: all done {recovered:.1f} s after")
