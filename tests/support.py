"""Test helpers shared by the fixtures and the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent


class WorkerPool:
    """Real RQ worker processes (`python -m workers.main`) against the test servers."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "QUEUE_NAME": settings.queue_name,
            "HANDLER_MODULES": settings.handler_modules,
            "SCHEDULER_INTERVAL_SECONDS": str(settings.scheduler_interval_seconds),
            "QUEUED_GRACE_SECONDS": str(settings.queued_grace_seconds),
            "WORKER_LOST_SECONDS": str(settings.worker_lost_seconds),
            "WORKER_HEARTBEAT_SECONDS": str(settings.worker_heartbeat_seconds),
            "OUTBOUND_ALLOWLIST": settings.outbound_allowlist,
            "CIRCUIT_FAILURE_THRESHOLD": str(settings.circuit_failure_threshold),
            "CIRCUIT_COOLDOWN_SECONDS": str(settings.circuit_cooldown_seconds),
            "LLM_BASE_URL": settings.llm_base_url,
            "LLM_API_KEY": settings.llm_api_key,
            "SIMULATED_LATENCY": str(settings.simulated_latency),
            "LOG_LEVEL": "INFO",
        }
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 1, **env: str | None) -> list[subprocess.Popen[bytes]]:
        """Start `count` workers with these environment changes (None: unset the variable)."""
        environment = {key: value for key, value in {**self.env, **env}.items() if value is not None}
        started = []
        for _ in range(count):
            log = open(self.log_dir / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115
            process = subprocess.Popen(
                [sys.executable, "-m", "workers.main"], cwd=ROOT, env=environment, stdout=log, stderr=log
            )
            self.processes.append(process)
            started.append(process)
        return started

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / "scheduler.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "app", "scheduler"],
            cwd=ROOT,
            env={**self.env, "LOG_LEVEL": "INFO"},
            stdout=log,
            stderr=log,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; its value, or fail the test at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)


class FakeServices:
    """Outside services for the handlers to call: a local HTTP server in a thread.

    GET  /json                  200 {"user": {"id": 7, "name": "ada"}}
    ANY  /echo                  200, the request as JSON (method, path, query, headers, body)
    GET  /flaky/<key>?fail=N    500 for the first N calls per key, then 200 {"calls": n}
    GET  /ratelimited/<key>     429 with Retry-After: 1 on the first call per key, then 200
    GET  /slow?seconds=S&tag=T  answers after S seconds; the call's span is kept under T
    GET  /status/<code>         that status
    GET  /redirect?to=URL       302 to URL
    GET  /big?bytes=N           N bytes of text
    POST /v1/chat/completions   an OpenAI-style completion echoing the prompt
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.calls: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.spans: dict[str, list[tuple[float, float]]] = {}  # /slow?tag=: (start, end) of each call
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.respond(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def count(self, key: str) -> int:
        self.calls[key] = self.calls.get(key, 0) + 1
        return self.calls[key]

    def respond(self, request: Any) -> None:
        import json
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(request.headers.get("content-length") or 0)
        body = request.rfile.read(length).decode() if length else ""
        seen = {
            "method": request.command,
            "path": parts.path,
            "query": query,
            "headers": dict(request.headers),
            "body": body,
        }
        self.requests.append(seen)
        status, headers, payload = 200, {}, None
        path = parts.path
        if path == "/json":
            payload = {"user": {"id": 7, "name": "ada"}}
        elif path == "/echo":
            payload = seen
        elif path.startswith("/flaky/"):
            calls = self.count(path)
            status = 500 if calls <= int(query.get("fail", "1")) else 200
            payload = {"calls": calls}
        elif path.startswith("/ratelimited/"):
            calls = self.count(path)
            status, headers = (429, {"Retry-After": "1"}) if calls == 1 else (200, {})
            payload = {"calls": calls}
        elif path == "/slow":
            started = time.monotonic()
            time.sleep(float(query.get("seconds", "3")))
            self.spans.setdefault(query.get("tag", ""), []).append((started, time.monotonic()))
            payload = {"slow": True}
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            payload = {"status": status}
        elif path == "/redirect":
            status, headers = 302, {"Location": query["to"]}
        elif path == "/big":
            raw = b"x" * int(query["bytes"])
            self._send(request, 200, {"Content-Type": "text/plain"}, raw)
            return
        elif path == "/v1/chat/completions":
            prompt = json.loads(body)["messages"][-1]["content"]
            payload = {
                "id": "chatcmpl-1",
                "model": json.loads(body)["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"echo: {prompt}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            }
        else:
            status, payload = 404, {"error": "no such path"}
        self._send(request, status, {"Content-Type": "application/json", **headers}, json.dumps(payload).encode())

    @staticmethod
    def _send(request: Any, status: int, headers: dict[str, str], raw: bytes) -> None:
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(raw)))
        request.end_headers()
        request.wfile.write(raw)

    def close(self) -> None:
        self.server.shutdown()
