"""Redis restarted empty while HTTP nodes run, and what gunicorn refuses before the app sees
it, on a stack of their own: every execution completes, no process is left dead, every
effect is made once under one key, and the clients see no 5xx but 503."""

from __future__ import annotations

import json
import socket
import time

from tests.faults.checks import assert_recovered, report, through
from tests.faults.stack import Stack


def test_redis_killed_and_restarted_empty_while_nodes_run(stack: Stack) -> None:
    def restart_redis_empty() -> None:
        stack.redis.kill()
        time.sleep(1)
        stack.redis.start()

    run, callers, recovered = through(stack, restart_redis_empty)
    assert_recovered(stack, run, callers)
    report("Redis restarted empty", stack, run, callers, recovered)


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
