"""A local HTTP service for the http_request nodes: every request is answered after a fixed delay."""

from __future__ import annotations

import http.server
import threading
import time
from typing import Any


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Hundreds of nodes connect at once; the default backlog of 5 would refuse most of them.
    request_queue_size = 2048


class SlowServer:
    """Answers `GET /slow` (any path, really) with a small JSON body after `delay` seconds,
    a thread per request, and remembers the most requests it held at once."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.in_flight = 0
        self.peak = 0
        self.served = 0
        self._lock = threading.Lock()
        slow = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the second waits for the
            # client's delayed ACK (~40 ms), which would be counted as the engine's time.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                slow.answer(self)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="slow-server", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slow"

    def reset(self) -> None:
        with self._lock:
            self.peak = self.served = 0

    def answer(self, request: http.server.BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self.delay)
            raw = b'{"slow": true}'
            request.send_response(200)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(raw)))
            request.end_headers()
            request.wfile.write(raw)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.served += 1

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
