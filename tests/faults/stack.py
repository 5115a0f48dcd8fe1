"""A whole Stepwise stack for the fault tests, every part a real process this module can
hurt: its own PostgreSQL cluster (restarted, stopped), its own redis-server (killed,
restarted empty, flushed), the API under gunicorn, workers and a scheduler (killed), and
a service the nodes call, which counts effects by Idempotency-Key."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import port_for
from redis import Redis

from app import migrate
from app.config import Settings
from app.runtime import Runtime
from app.services import api_keys

ROOT = Path(__file__).resolve().parent.parent.parent


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError(f"{name} not found: install PostgreSQL's server")
    return str(versions[-1])


def _as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class OwnPostgres:
    """A throwaway cluster on a free port, with fsync on (a crash must be a real one)."""

    def __init__(self) -> None:
        # Outside pytest's tmp (root's, 0700): the postgres user must reach the directory.
        base = Path(tempfile.mkdtemp(prefix="stepwise-faults-pg-"))
        self.base = base
        self.data = base / "data"
        self.port = port_for.get_port(None)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/stepwise"
        base.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(base, "postgres")
        subprocess.run(
            _as_postgres([_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.start()
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "stepwise"], check=True
        )

    def _ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), *args]), check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} -c max_connections=100"
        self._ctl("-l", str(self.base / "postgresql.log"), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")

    def restart(self, mode: str) -> None:
        """`pg_ctl restart -m fast` (clients told) or `-m immediate` (a crash: recovery on start)."""
        self.stop(mode)
        self.start()

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


class OwnRedis:
    """A redis-server on a free port that keeps nothing on disk: a restart is an empty one."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = port_for.get_port(None)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        server = shutil.which("redis-server") or "redis-server"
        args = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen([*args, "--dir", str(self.base)], stdout=subprocess.DEVNULL)
        client = Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def flushall(self) -> None:
        Redis.from_url(self.url).flushall()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


class EffectService:
    """The outside world: `POST /effect?ms=N` answers 200 after N ms and counts the call
    under its Idempotency-Key. A receiver that honours the key makes one effect per key."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = {}  # key -> monotonic time of each call's arrival
        self.in_flight = 0
        self._lock = threading.Lock()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                self.rfile.read(int(self.headers.get("content-length") or 0))
                key = self.headers.get("Idempotency-Key", "")
                with service._lock:
                    service.calls[key] += 1
                    service.arrivals.setdefault(key, []).append(time.monotonic())
                    service.in_flight += 1
                time.sleep(int(parse_qs(parts.query).get("ms", ["0"])[0]) / 1000)
                with service._lock:
                    service.in_flight -= 1
                body = b'{"done": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a caller killed mid-call: its answer has nowhere to go, as in life

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.calls)

    def close(self) -> None:
        self.server.shutdown()


class Stack:
    """PostgreSQL, Redis, the effect service, the API (gunicorn), workers and a scheduler,
    with the engine's default timings (heartbeat, loss, grace) unless told otherwise."""

    def __init__(self, base: Path, workers: int = 2, **settings: str) -> None:
        self.base = base
        self.postgres = OwnPostgres()
        self.redis = OwnRedis(base)
        self.effects = EffectService()
        migrate.upgrade(self.postgres.url)
        self.env = {
            **os.environ,
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "QUEUE_NAME": "faults",
            "OUTBOUND_ALLOWLIST": "127.0.0.1/32",
            "SCHEDULER_INTERVAL_SECONDS": "0.5",
            "RATE_LIMIT_READER": "100000/minute",
            "RATE_LIMIT_WRITER": "100000/minute",
            "RATE_LIMIT_ADMIN": "100000/minute",
            "RATE_LIMIT_TRIGGER": "100000/minute",
            "LOG_LEVEL": "INFO",
            **settings,
        }
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.settings = Settings.from_env(self.env)
        runtime = Runtime.from_settings(self.settings)
        with runtime.sessions() as session:
            _, self.key = api_keys.create_key(session, "faults", "admin")
        runtime.close()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.api_port = port_for.get_port(None)
        self.api = f"http://127.0.0.1:{self.api_port}"
        self._start("api", "-m", "gunicorn", "--config", "gunicorn.conf.py", "--workers", "2",
                    "--bind", f"127.0.0.1:{self.api_port}", "app:create_app()")  # fmt: skip
        for i in range(1, workers + 1):
            self._start(f"worker-{i}", "-m", "workers.main")
        self._start("scheduler", "-m", "flask", "--app", "app", "scheduler")
        self.wait(lambda: self.call("GET", "/ready")[0] == 200, 30, "the API to be ready")

    def _start(self, name: str, *args: str) -> None:
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115
        self.processes[name] = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=self.env, stdout=log, stderr=log, start_new_session=True
        )

    def kill(self, name: str) -> None:
        """kill -9 of one process (a crash, an OOM kill)."""
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait(10)

    def restart(self, name: str) -> None:
        """Start a killed process again, as a supervisor would."""
        args = self.processes[name].args[1:]  # type: ignore[index]
        self._start(name, *args)

    def dead(self) -> list[str]:
        """The processes that are not running."""
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """An API call: (status, JSON body); status 0 when nothing answered."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

    def define(self, nodes: list[dict[str, Any]]) -> str:
        status, body = self.call("POST", "/api/v1/workflows", {"name": f"f-{uuid.uuid4().hex[:8]}", "nodes": nodes,
                                                             "activate": True})  # fmt: skip
        assert status == 201, body
        return str(body["id"])

    def effect_fanout(self, calls: int, ms: int) -> str:
        """root -> `calls` http_request nodes to the effect service -> sink."""
        url = f"{self.effects.url}/effect?ms={ms}"
        calls_ = [
            {"id": f"call-{i}", "handler": "http_request", "dependencies": ["root"],
             "config": {"url": url, "method": "POST", "body": {"n": i}}}
            for i in range(calls)
        ]  # fmt: skip
        sink = {"id": "sink", "handler": "noop", "dependencies": [c["id"] for c in calls_]}
        return self.define([{"id": "root", "handler": "noop"}, *calls_, sink])

    def trigger(self, workflow_id: str, key: str | None = None) -> str:
        """Trigger as a careful client does: on a 503 or no answer, again with the same key."""
        key = key or uuid.uuid4().hex
        while True:
            status, body = self.call("POST", "/api/v1/executions", {"workflow_id": workflow_id},
                                     {"Idempotency-Key": key})  # fmt: skip
            if status in (200, 201):
                return str(body["id"])
            assert status in (0, 503), (status, body)
            time.sleep(0.5)

    def status(self, execution_id: str) -> str | None:
        code, body = self.call("GET", f"/api/v1/executions/{execution_id}?nodes_limit=0")
        return body["status"] if code == 200 else None

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout} s for {what}; logs in {self.base}")
            time.sleep(0.2)

    def close(self) -> None:
        """Gone at once (a throwaway stack: nothing in it needs a warm shutdown)."""
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # its group: gunicorn's workers too
            process.wait(15)
        self.effects.close()
        self.redis.close()
        self.postgres.close()


class Callers(threading.Thread):
    """Clients calling the API through a fault: reads, and triggers retried on a 503 with
    their key. Every status they got is kept; a 5xx other than 503 is a finding."""

    def __init__(self, stack: Stack, workflow_id: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.workflow_id = stack, workflow_id
        self.statuses: Counter[int] = Counter()
        self.triggered: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            for method, path in (("GET", "/api/v1/executions?limit=5"), ("GET", "/api/v1/workflows?limit=5")):
                self.statuses[self.stack.call(method, path)[0]] += 1
            key = uuid.uuid4().hex
            while not self._done.is_set():
                status, body = self.stack.call("POST", "/api/v1/executions", {"workflow_id": self.workflow_id},
                                               {"Idempotency-Key": key})  # fmt: skip
                self.statuses[status] += 1
                if status in (200, 201):
                    self.triggered.append(str(body["id"]))
                    break
                time.sleep(0.3)
            self._done.wait(0.2)

    def stop(self) -> None:
        self._done.set()
        self.join(30)
