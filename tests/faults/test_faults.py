"""Faults on the real stack, short enough for `make test` (the longer ones: test_chaos.py,
`make chaos`): a worker killed, Redis restarted empty, PostgreSQL crashed, each while
HTTP nodes run. Each ends with every execution COMPLETED, no process left dead, every
effect made under one key (and not sent twice unless its worker died), and no 5xx but
503 for the clients calling meanwhile."""

from __future__ import annotations

import json
import socket
import time

from tests.faults.checks import assert_recovered, report, through
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
    again = max(arrivals[key][1] - killed_at[0] for key in resent)
    report(f"kill -9 worker ({len(resent)} calls in flight made again, the last {again:.1f} s after)", stack, run,
           callers, recovered)  # fmt: skip


def test_redis_killed_and_restarted_empty_while_nodes_run(stack: Stack) -> None:
    def restart_redis_empty() -> None:
        stack.redis.kill()
        time.sleep(1)
        stack.redis.start()

    run, callers, recovered = through(stack, restart_redis_empty)
    assert_recovered(stack, run, callers)
    report("Redis restarted empty", stack, run, callers, recovered)


def test_postgresql_crashed_and_restarted_while_effects_are_in_flight(stack: Stack) -> None:
    # `pg_ctl restart -m immediate`: a crash, then recovery. What a worker finished while
    # PostgreSQL was away is recorded once it is back, not failed as worker_lost and sent again.
    run, callers, recovered = through(stack, lambda: stack.postgres.restart("immediate"))
    assert_recovered(stack, run, callers)
    report("PostgreSQL restart -m immediate", stack, run, callers, recovered)


def test_what_gunicorn_refuses_itself_is_answered_in_the_json_error_shape(stack: Stack) -> None:
    # Never reaches the app: an over-long request line (414), over-long headers (431).
    for raw, status in (
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ):
        with socket.create_connection(("127.0.0.1", stack.api_port), timeout=5) as conn:
            conn.sendall(raw)
            head, _, body = conn.recv(65536).partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()) and b"Content-Type: application/problem+json" in head
        error = json.loads(body)
        assert (
            error["status"] == status and error["title"] and error["detail"] and error["type"].startswith("/problems/")
        )
