"""The bench's own processes: RQ workers on a queue of its own, the API and the bare app
under gunicorn. All are children of the bench, each in a session of its own (so a Ctrl-C
reaches the bench alone, which then stops them in order); `close` stops every one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from redis import Redis
from rq import Queue, Worker

ROOT = Path(__file__).resolve().parent.parent
# The make-run stack's and the usual servers' ports: never taken for the bench's own.
RESERVED_PORTS = frozenset({5432, 6379, 8000, 55432, 56379})
STOP_SECONDS = 30


class BenchError(Exception):
    """A step could not be measured (a process did not start, a run failed or timed out)."""


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in RESERVED_PORTS:
            return port


def rss_kib(pid: int) -> int:
    """A process's resident memory (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


class Stack:
    """Starts and stops the bench's processes; logs go to `log_dir`."""

    def __init__(self, env: dict[str, str], queue: Queue, log_dir: Path) -> None:
        self.env = env
        self.queue = queue
        self.log_dir = log_dir
        self.workers: list[subprocess.Popen[bytes]] = []
        self.servers: dict[str, subprocess.Popen[bytes]] = {}
        self._started = 0

    @property
    def redis(self) -> Redis:
        return self.queue.connection

    def _spawn(self, args: list[str], name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        self._started += 1
        log = open(self.log_dir / f"{self._started:02d}-{name}.log", "wb")  # noqa: SIM115 (the child owns it)
        try:
            return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
        finally:
            log.close()

    def start_workers(self, count: int, **env: str) -> None:
        """`count` worker processes (`python -m workers.main`), ready when RQ lists them all."""
        environment = {
            **self.env,
            "WORKER_CLASS": "simple",
            "LOG_LEVEL": "WARNING",
            # They call the bench's local HTTP service, which the outbound policy refuses by default.
            "OUTBOUND_ALLOWLIST": "127.0.0.1/32",
            **env,
        }
        for i in range(count):
            self.workers.append(self._spawn([sys.executable, "-m", "workers.main"], f"worker-{i + 1}", environment))
        deadline = time.monotonic() + 60
        while Worker.count(queue=self.queue) < count:
            self._check_alive(self.workers, "a worker")
            if time.monotonic() > deadline:
                raise BenchError(f"the workers did not start; see {self.log_dir}")
            time.sleep(0.05)

    def stop_workers(self) -> None:
        """A warm shutdown (SIGTERM): the nodes in hand finish first."""
        _stop(self.workers)
        self.workers.clear()

    def worker_pids(self) -> list[int]:
        return [proc.pid for proc in self.workers]

    def start_gunicorn(self, name: str, app: str, port: int, **env: str) -> str:
        """The app under gunicorn with `make run`'s settings; its base URL once /health answers."""
        args = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "--workers", "2"]
        args += ["--bind", f"127.0.0.1:{port}", app]
        proc = self._spawn(args, name, {**self.env, **env})
        self.servers[name] = proc
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _answers(f"{base}/health"):
            self._check_alive([proc], name)
            if time.monotonic() > deadline:
                raise BenchError(f"{name} did not come up; see {self.log_dir}")
            time.sleep(0.1)
        return base

    def stop_server(self, name: str) -> None:
        proc = self.servers.pop(name, None)
        if proc is not None:
            _stop([proc])

    def close(self) -> None:
        """Stop everything still running: workers first (they may be mid-node), then the servers."""
        self.stop_workers()
        _stop(list(self.servers.values()))
        self.servers.clear()

    def _check_alive(self, procs: list[subprocess.Popen[bytes]], what: str) -> None:
        for proc in procs:
            if proc.poll() is not None:
                raise BenchError(f"{what} exited with {proc.returncode}; see {self.log_dir}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each, wait, then SIGKILL the process group of any that outlived the wait
    (a gunicorn master's own workers are in its group)."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"process {proc.pid} ignored SIGTERM for {STOP_SECONDS}s; killing its group", file=sys.stderr)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
