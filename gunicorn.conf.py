"""gunicorn settings for the API (used by `make run` and the Dockerfile)."""

from prometheus_client import multiprocess


def child_exit(server, worker):
    """A worker process exited: drop its live gauges from the shared metrics directory."""
    multiprocess.mark_process_dead(worker.pid)
