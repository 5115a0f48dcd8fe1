"""supervisord, with the config `make run` uses (scripts/supervisor_conf.py), starts a worker
again when it dies, and takes every process with it when it shuts down."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import port_for
import pytest

from app.config import Settings
from scripts.supervisor_conf import render, settings_environment
from tests.support import ROOT, WorkerPool, wait_for

BIN = Path(sys.executable).parent
STATUS_LINE = re.compile(r"^(?P<name>\S+)\s+(?P<state>[A-Z]+)(?:\s+pid (?P<pid>\d+),)?")


@dataclass(frozen=True)
class Supervised:
    conf: Path
    marker: bytes  # an environment entry that every process of this supervisord carries
    health_url: str


def supervisorctl(conf: Path, *args: str) -> str:
    return subprocess.run([BIN / "supervisorctl", "-c", conf, *args], capture_output=True, text=True, timeout=60).stdout


def status(conf: Path) -> dict[str, tuple[str, int | None]]:
    """Each process's state and pid, as `supervisorctl status` shows them."""
    found: dict[str, tuple[str, int | None]] = {}
    for line in supervisorctl(conf, "status").splitlines():
        match = STATUS_LINE.match(line)
        if match:
            found[match["name"]] = (match["state"], int(match["pid"]) if match["pid"] else None)
    return found


def processes_with(marker: bytes) -> list[int]:
    """Live processes whose environment holds `marker` (a zombie's environment reads empty)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile
                pass
    return pids


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def supervised(settings: Settings, tmp_path: Path) -> Iterator[Supervised]:
    """The stack's supervisord (API, one worker, scheduler) against the test servers. A queue
    of its own, so its worker takes no other test's jobs (its scheduler stands by while the
    suite's leads: one leads, by an advisory lock). Whatever the test leaves is killed."""
    queue = f"supervision-{uuid.uuid4().hex[:8]}"
    env = {**WorkerPool(settings, tmp_path).env, "QUEUE_NAME": queue}
    port = port_for.get_port(None)
    conf = tmp_path / "supervisord.conf"
    conf.write_text(
        render(
            data_dir=tmp_path,
            bin_dir=BIN,
            bind=f"127.0.0.1:{port}",
            workers=1,
            environment=settings_environment(env),
        )
    )
    subprocess.run([BIN / "supervisord", "-c", conf], cwd=ROOT, env=env, check=True, timeout=30)
    marker = f"QUEUE_NAME={queue}".encode()
    yield Supervised(conf, marker, f"http://127.0.0.1:{port}/health")
    for pid in processes_with(marker):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_killed_worker_is_started_again_and_shutdown_leaves_no_process(supervised: Supervised) -> None:
    conf = supervised.conf

    def all_running() -> bool:
        states = status(conf)
        return set(states) == {"api", "worker:worker-1", "scheduler"} and all(
            state == "RUNNING" for state, _ in states.values()
        )

    wait_for(all_running, timeout=20)
    wait_for(lambda: answers(supervised.health_url), timeout=10)

    killed = status(conf)["worker:worker-1"][1]
    assert killed is not None
    os.kill(killed, signal.SIGKILL)

    def started_again() -> int | None:
        state, pid = status(conf)["worker:worker-1"]
        return pid if state == "RUNNING" and pid != killed else None

    assert wait_for(started_again, timeout=10) != killed

    supervisorctl(conf, "shutdown")
    # supervisord, gunicorn and its workers, the worker, the scheduler: all gone.
    wait_for(lambda: not processes_with(supervised.marker), timeout=40)
