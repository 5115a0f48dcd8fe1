"""The supervisord config behind `make run`: the API, the workers and the scheduler, started
again whenever one dies.

scripts/stack.sh writes .data/supervisord.conf with
`python -m scripts.supervisor_conf --data .data --bind HOST:PORT --workers N`;
tests/e2e/test_supervision.py renders the same config for its own servers.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
# Its ini parser has no escapes: quotes would end the value, " ;" and " #" start a comment.
UNWRITABLE = re.compile(r"[\"'\n]|\s[;#]")

# What every program shares. supervisord backs off by itself: a process that dies within
# startsecs of starting is tried again after 1 s, then 2 s, 3 s, ... (its BACKOFF state), up
# to startretries times (about 85 minutes in all) before it is left FATAL; a process that
# ran longer is started again at once.
SUPERVISION = """\
directory={root}
environment={environment}
autostart=true
autorestart=true
startsecs=2
startretries=100
stopsignal=TERM
redirect_stderr=true"""

TEMPLATE = """\
; Written by scripts/supervisor_conf.py (scripts/stack.sh start): edits here are overwritten.
; See the processes with: supervisorctl -c {data}/supervisord.conf status

[supervisord]
pidfile={data}/supervisord.pid
logfile={data}/supervisord.log
childlogdir={data}
directory={root}

[unix_http_server]
file={data}/supervisor.sock
chmod=0700

[supervisorctl]
serverurl=unix://{data}/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[program:api]
command={api}
{supervision}
stdout_logfile={data}/api.log
; gunicorn's SIGTERM is graceful (its graceful_timeout is 30 s); the whole process group
; gets the signals, so its worker processes go with it.
stopwaitsecs=35
stopasgroup=true
killasgroup=true

[program:worker]
command={worker}
process_name=worker-%(process_num)s
numprocs={workers}
numprocs_start=1
{supervision}
stdout_logfile={data}/worker-%(process_num)s.log
; SIGTERM to the worker alone is a warm shutdown: the nodes in hand finish. (Sent to its
; group, it would also kill at once the child that WORKER_CLASS=fork runs a job in.) Past
; stopwaitsecs the group is killed; the scheduler then retries the nodes it held.
stopwaitsecs=30
killasgroup=true

[program:scheduler]
command={scheduler}
{supervision}
stdout_logfile={data}/scheduler.log
stopwaitsecs=30
stopasgroup=true
killasgroup=true
"""


def settings_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of `env` that the processes read: Settings' fields, and the directory
    they share their metrics in."""
    names = {f.name.upper() for f in fields(Settings)} | {"PROMETHEUS_MULTIPROC_DIR"}
    return {name: value for name, value in env.items() if name in names and value}


def render(*, data_dir: Path, bin_dir: Path, bind: str, workers: int, environment: Mapping[str, str]) -> str:
    """The config text: supervisord's socket, pidfile and logs in data_dir; the programs run
    from bin_dir (a virtualenv's bin) with `environment` on top of supervisord's own."""

    def command(*argv: str | Path) -> str:
        return _escape(shlex.join(str(arg) for arg in argv))

    supervision = SUPERVISION.format(root=_escape(str(ROOT)), environment=_environment_line(environment))
    return TEMPLATE.format(
        data=_escape(str(data_dir)),
        root=_escape(str(ROOT)),
        supervision=supervision,
        workers=workers,
        api=command(
            bin_dir / "gunicorn", "--config", "gunicorn.conf.py", "--workers", "2", "--bind", bind, "app:create_app()"
        ),
        worker=command(bin_dir / "python", "-m", "workers.main"),
        scheduler=command(bin_dir / "flask", "--app", "app", "scheduler"),
    )


def _escape(value: str) -> str:
    """supervisord expands %(name)s in its values: a literal % is written %%."""
    return value.replace("%", "%%")


def _environment_line(environment: Mapping[str, str]) -> str:
    """KEY="value",... as supervisord reads it: each value quoted, so commas stay in it."""
    pairs = []
    for name, value in sorted(environment.items()):
        if UNWRITABLE.search(value):
            raise ValueError(f"{name}: supervisord's config cannot hold quotes, newlines or ' ;' / ' #' in a value")
        pairs.append(f'{name}="{_escape(value)}"')
    return ",".join(pairs)


def main() -> None:
    """Write <data>/supervisord.conf, with the settings in this process's environment."""
    parser = argparse.ArgumentParser(description="Write <data>/supervisord.conf for scripts/stack.sh.")
    parser.add_argument("--data", type=Path, required=True, help="where the config, socket, pidfile and logs go")
    parser.add_argument("--bind", required=True, help="the API's HOST:PORT")
    parser.add_argument("--workers", type=int, required=True)
    args = parser.parse_args()
    data_dir = args.data.resolve()
    text = render(
        data_dir=data_dir,
        bin_dir=Path(sys.executable).parent,
        bind=args.bind,
        workers=args.workers,
        environment=settings_environment(os.environ),
    )
    # Only its owner reads it: the environment may carry secrets (a password in DATABASE_URL).
    path = data_dir / "supervisord.conf"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(path, 0o600)  # an older file keeps its mode through O_TRUNC


if __name__ == "__main__":
    main()
