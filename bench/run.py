"""The benchmark suite: the engine against plain RQ and a bare Flask app, on processes of its own.

    python bench/run.py [--workers 2] [--quick] [--only name,name]

Uses the PostgreSQL and Redis of `make run` (DATABASE_URL / REDIS_URL, else the local
stack's ports; `make bench` starts them) and starts its own: an RQ queue named
bench-<random>, its worker processes, the API under gunicorn with the rate limits
raised, a local slow HTTP service, the bare app, wrk. It stops all of them at the end,
however the run ends. Progress goes to stderr; stdout gets the machine's load, a table
of the figures, the goals, then `BENCH <name> <value> <unit>` lines.

--quick runs small sizes and short loads, to check the harness; the figures keep their names.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402

from app import migrate  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import make_engine, make_sessionmaker  # noqa: E402
from app.services import api_keys  # noqa: E402
from bench import pg  # noqa: E402
from bench.client import EngineClient  # noqa: E402
from bench.report import UNITS, Report  # noqa: E402
from bench.stack import BenchError, Stack, free_port  # noqa: E402
from bench.steps import FULL, QUICK, RAISED_RATE_LIMIT, Bench, say  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--quick", action="store_true", help="small sizes and short loads, to check the harness")
    parser.add_argument("--only", default="", help=f"comma-separated figures to measure, of: {', '.join(UNITS)}")
    args = parser.parse_args()
    args.selected = {name.strip() for name in args.only.split(",") if name.strip()} or set(UNITS)
    unknown = args.selected - set(UNITS)
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(sorted(unknown))}; known: {', '.join(UNITS)}")
    return args


def load_line(when: str) -> str:
    one, five, fifteen = os.getloadavg()
    return f"machine ({when}): {os.cpu_count()} CPUs, load average {one:.2f} {five:.2f} {fifteen:.2f}"


def backlog_line(client: EngineClient) -> str:
    """Work other users left in this database: the workers do not see it (another queue),
    but the API's admission counts every QUEUED node, and a backlog skews every figure."""
    queued = client.queued_nodes()
    if queued:
        say(f"warning: {queued} nodes of other executions wait QUEUED in this database; triggers may get 503")
    return f"database (start): {queued} nodes QUEUED before the bench's own"


def create_admin_key(settings: Settings, name: str) -> str:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        _, key = api_keys.create_key(make_sessionmaker(engine)(), name, "admin")
    finally:
        engine.dispose()
    return key


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the processes


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    sizes = QUICK if args.quick else FULL
    run_id = uuid.uuid4().hex[:8]
    settings = replace(Settings.from_env(), queue_name=f"bench-{run_id}")
    print(load_line("start"), flush=True)
    say(f"run {run_id}: queue {settings.queue_name}, {args.workers} workers, {'quick' if args.quick else 'full'} sizes")
    migrate.upgrade(settings.database_url)

    run_dir = Path(tempfile.mkdtemp(prefix=f"stepwise-bench-{run_id}-"))
    (run_dir / "prometheus").mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "QUEUE_NAME": settings.queue_name,
        "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "prometheus"),
    }
    redis = Redis.from_url(settings.redis_url)
    queue = Queue(settings.queue_name, connection=redis)
    stack = Stack(env, queue, run_dir)
    report = Report()
    key_name = f"bench-{run_id}"
    db = None
    client: EngineClient | None = None
    bench: Bench | None = None
    failed = True
    try:
        key = create_admin_key(settings, key_name)
        say(f"starting {args.workers} workers")
        stack.start_workers(args.workers)
        say(f"workers up: pids {', '.join(map(str, stack.worker_pids()))}")
        say("starting the API under gunicorn")
        limits = {f"RATE_LIMIT_{role}": RAISED_RATE_LIMIT for role in ("READER", "WRITER", "ADMIN", "TRIGGER")}
        base_url = stack.start_gunicorn("api", "app:create_app()", free_port(), **limits)
        say(f"API up at {base_url} (gunicorn master pid {stack.servers['api'].pid})")
        db = pg.connect(settings.database_url)
        client = EngineClient(base_url, key, db, run_id)
        print(backlog_line(client), flush=True)
        bench = Bench(stack, client, sizes, args.workers, args.selected, report)
        bench.run_all()
        failed = False
    except BenchError as err:
        say(f"failed: {err}")
    finally:
        say("stopping the bench's processes")
        if bench is not None:
            bench.close()
        if client is not None:
            client.revoke_own_key(key_name)  # through the API, which knows which caches to tell
            client.close()
        stack.close()
        queue.delete(delete_jobs=True)
        if db is not None:
            db.close()
        if failed:
            say(f"logs kept in {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)

    print(load_line("end"))
    print("\n".join(report.lines()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
