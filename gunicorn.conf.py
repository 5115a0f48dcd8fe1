"""gunicorn settings for the API (used by `make run` and the Dockerfile)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gunicorn import util
from prometheus_client import multiprocess

from app.api import problems

if TYPE_CHECKING:
    import socket

    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker


def child_exit(server: Arbiter, worker: Worker) -> None:
    """A worker process exited: drop its live gauges from the shared metrics directory."""
    multiprocess.mark_process_dead(worker.pid)


def _json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own answers to what never reaches the app (a request line or headers
    over its limits: 414, 431; a malformed request: 400) as the API's problem details
    rather than gunicorn's HTML page. gunicorn has no hook for them: this replaces the
    function its workers call (util.write_error), once, here in the master before they
    fork."""
    kind = problems.TYPES.get(problems.BY_STATUS.get(status_int, ""))
    body = json.dumps(
        {
            "type": kind.uri if kind else "about:blank",
            "title": kind.title if kind else reason,
            "status": status_int,
            "detail": mesg or reason,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {problems.MEDIA_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = _json_error
