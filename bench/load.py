"""The load generator for the request-rate figures: wrk, with bench/post.lua."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.stack import BenchError

SCRIPT = Path(__file__).with_name("post.lua")
WRK_THREADS = 2  # one per core of the machine the figures come from; wrk needs connections >= threads


@dataclass(frozen=True)
class LoadResult:
    """What wrk saw in one run; `ok` counts 2xx answers only."""

    ok: int
    refused: int  # 503
    other: int  # any other status
    socket_errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def ok_per_second(self) -> float:
        return self.ok / self.seconds


def post(url: str, body: str, clients: int, seconds: float, authorization: str = "") -> LoadResult:
    """POST `body` to `url` from `clients` connections for `seconds`, each request with an
    Idempotency-Key of its own."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is missing: `make bench` installs it (apt-get install -y --no-install-recommends wrk)")
    prefix = uuid.uuid4().hex[:12]
    args = [wrk, f"-t{min(WRK_THREADS, clients)}", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "60s"]
    args += ["-s", str(SCRIPT), url, "--", body, prefix, authorization]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK ")]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    values = {k: int(v) for k, v in (pair.split("=") for pair in lines[-1].split()[1:])}
    return LoadResult(
        ok=values["ok"],
        refused=values["refused"],
        other=values["other"],
        socket_errors=values["socket_errors"],
        seconds=values["duration_us"] / 1e6,
        p50_ms=values["p50_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
    )
