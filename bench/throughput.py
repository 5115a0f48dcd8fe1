"""Engine throughput against plain RQ, on the same worker processes in the same run.

    python bench/throughput.py [--workers 2] [--worker-class simple|fork|both] [--fan 1000] [--chain 200]

Needs PostgreSQL and Redis: DATABASE_URL / REDIS_URL, or the local stack of
`make run` (`make bench` starts it). Uses a queue of its own, so a running
stack's workers do not take part.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from rq import Queue, Worker
from sqlalchemy import select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import migrate  # noqa: E402
from app.config import Settings  # noqa: E402
from app.domain.dag import NodeSpec  # noqa: E402
from app.models import Execution  # noqa: E402
from app.runtime import Runtime  # noqa: E402
from app.services import executions, workflows  # noqa: E402
from bench import jobs  # noqa: E402


@dataclass
class Figures:
    rq_fan_per_s: float
    engine_fan_per_s: float
    rq_hop_ms: float
    engine_hop_ms: float


def start_workers(rt: Runtime, count: int, worker_class: str) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": rt.settings.database_url,
        "REDIS_URL": rt.settings.redis_url,
        "QUEUE_NAME": rt.settings.queue_name,
        "WORKER_CLASS": worker_class,
        "LOG_LEVEL": "WARNING",
    }
    procs = [
        subprocess.Popen([sys.executable, "-m", "workers.main"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]
    queue = Queue(rt.settings.queue_name, connection=rt.redis)
    deadline = time.monotonic() + 30
    while len(Worker.all(queue=queue)) < count:
        if time.monotonic() > deadline:
            raise SystemExit("workers did not start")
        time.sleep(0.05)
    return procs


def wait_counter(rt: Runtime, key: str, target: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while int(rt.redis.get(key) or 0) < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"plain RQ run did not finish ({rt.redis.get(key)}/{target})")
        time.sleep(0.005)


def rq_fan(rt: Runtime, n: int) -> float:
    """Jobs per second for n independent no-op jobs enqueued at once."""
    key = f"bench:{uuid.uuid4().hex}"
    queue = rt.dispatcher.queue
    start = time.perf_counter()
    queue.enqueue_many([Queue.prepare_data(jobs.count, args=(key,), result_ttl=0) for _ in range(n)])
    wait_counter(rt, key, n)
    return n / (time.perf_counter() - start)


def rq_chain(rt: Runtime, n: int) -> float:
    """Milliseconds per hop for a chain of n jobs, each enqueuing the next."""
    key = f"bench:{uuid.uuid4().hex}"
    start = time.perf_counter()
    rt.dispatcher.queue.enqueue(jobs.hop, key, n - 1, result_ttl=0)
    wait_counter(rt, key, 1)
    return (time.perf_counter() - start) * 1000 / n


def run_workflow(rt: Runtime, nodes: list[NodeSpec], timeout: float = 600) -> float:
    """Seconds from trigger to the execution's end."""
    with rt.sessions() as session:
        detail = workflows.create_workflow(
            session,
            workflows.WorkflowDraft(name=f"bench-{uuid.uuid4().hex[:8]}", nodes=nodes, activate=True),
            rt.limits,
        )
        start = time.perf_counter()
        view = executions.trigger(session, rt.dispatcher, executions.TriggerRequest(workflow_id=detail.workflow.id))
        deadline = time.monotonic() + timeout
        while True:
            with session.begin():
                status = session.scalar(select(Execution.status).where(Execution.id == view.execution.id))
            if status in ("COMPLETED", "FAILED", "CANCELLED"):
                break
            if time.monotonic() > deadline:
                raise SystemExit("engine run did not finish")
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
    if status != "COMPLETED":
        raise SystemExit(f"engine run ended {status}")
    return elapsed


def fan_dag(n: int) -> list[NodeSpec]:
    middle = [NodeSpec(f"m{i}", "noop", ("root",)) for i in range(n - 2)]
    return [NodeSpec("root", "noop"), *middle, NodeSpec("sink", "noop", tuple(m.node_id for m in middle))]


def chain_dag(n: int) -> list[NodeSpec]:
    return [NodeSpec("n0", "noop")] + [NodeSpec(f"n{i}", "noop", (f"n{i - 1}",)) for i in range(1, n)]


def measure(rt: Runtime, args: argparse.Namespace, worker_class: str) -> Figures:
    procs = start_workers(rt, args.workers, worker_class)
    try:
        run_workflow(rt, chain_dag(5))  # warm the workers' connections
        rq_chain(rt, 5)
        rq_fan_s = rq_fan(rt, args.fan)
        engine_fan_s = args.fan / run_workflow(rt, fan_dag(args.fan))
        rq_hop = rq_chain(rt, args.chain)
        engine_hop = run_workflow(rt, chain_dag(args.chain)) * 1000 / args.chain
        return Figures(rq_fan_s, engine_fan_s, rq_hop, engine_hop)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", choices=["simple", "fork", "both"], default="both")
    parser.add_argument("--fan", type=int, default=1000, help="nodes in the fan-out/fan-in DAG")
    parser.add_argument("--chain", type=int, default=200, help="nodes in the chain")
    parser.add_argument("--repeat", type=int, default=1, help="runs per worker class; the best is kept")
    args = parser.parse_args()

    settings = Settings.from_env()
    settings = replace(settings, queue_name=f"bench-{uuid.uuid4().hex[:8]}")
    migrate.upgrade(settings.database_url)
    rt = Runtime.from_settings(settings)
    classes = ["simple", "fork"] if args.worker_class == "both" else [args.worker_class]
    print(f"{args.workers} worker processes; fan-out/fan-in of {args.fan} noop nodes; chain of {args.chain}")
    print(f"{'worker':<8} {'shape':<16} {'plain RQ':>14} {'engine':>14} {'engine/RQ':>10}")
    for worker_class in classes:
        runs = [measure(rt, args, worker_class) for _ in range(args.repeat)]
        best = Figures(
            max(r.rq_fan_per_s for r in runs),
            max(r.engine_fan_per_s for r in runs),
            min(r.rq_hop_ms for r in runs),
            min(r.engine_hop_ms for r in runs),
        )
        print(
            f"{worker_class:<8} {'fan-out/fan-in':<16} {best.rq_fan_per_s:>9.0f} jobs/s "
            f"{best.engine_fan_per_s:>8.0f} nodes/s {100 * best.engine_fan_per_s / best.rq_fan_per_s:>9.0f}%"
        )
        print(
            f"{worker_class:<8} {'chain':<16} {best.rq_hop_ms:>10.1f} ms/hop {best.engine_hop_ms:>7.1f} ms/hop "
            f"{100 * best.rq_hop_ms / best.engine_hop_ms:>9.0f}%"
        )
    rt.close()


if __name__ == "__main__":
    main()
