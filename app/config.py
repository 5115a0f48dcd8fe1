"""Settings, read from the environment. No other module reads os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

# `make run` starts PostgreSQL and Redis on these ports when no URL is given;
# they stay clear of the standard ones so a machine's own servers are untouched.
LOCAL_DATABASE_URL = "postgresql://stepwise@127.0.0.1:55432/stepwise"
LOCAL_REDIS_URL = "redis://127.0.0.1:56379/0"


@dataclass(frozen=True)
class Settings:
    database_url: str = LOCAL_DATABASE_URL
    redis_url: str = LOCAL_REDIS_URL
    queue_name: str = "stepwise"
    # SimpleWorker runs nodes in the worker process; "fork" forks per job (RQ's Worker).
    worker_class: str = "simple"
    # HTTP and LLM nodes one worker keeps in flight at once (its thread pool).
    worker_concurrency: int = 32
    # How long a worker goes on running the in-process nodes its own finishes ready before
    # it hands what is ready to the queue, where other executions' jobs wait.
    worker_slice_ms: int = 100
    # The most nodes one RQ job carries.
    job_max_nodes: int = 200
    # What one node may take of its worker (it fails for good past these; the worker lives):
    # its config once templates are resolved, its output, and the worker's memory it grows.
    max_resolved_config_bytes: int = 1024 * 1024
    max_output_bytes: int = 2 * 1024 * 1024
    node_memory_limit_mb: int = 512
    max_nodes: int = 10_000
    max_edges: int = 100_000
    max_node_config_bytes: int = 10 * 1024
    default_node_timeout_seconds: int = 300
    max_node_timeout_seconds: int = 3600
    db_pool_size: int = 5
    log_level: str = "INFO"
    # Comma-separated modules whose @handler functions to register, in the API and workers alike.
    handler_modules: str = ""
    # The scheduler: how often it looks, and when it calls a node lost.
    scheduler_interval_seconds: float = 1.0
    queued_grace_seconds: int = 5  # QUEUED this long with no RQ job: enqueue it again
    # A worker silent this long has lost its RUNNING nodes: three heartbeats missed, so a
    # dead worker's nodes run again within about 8 s (a tick and a heartbeat later).
    worker_lost_seconds: int = 6
    worker_heartbeat_seconds: int = 2
    retention_days: int = 7  # finished executions older than this are purged
    # Outbound HTTP (http_request, llm_service): non-public addresses are refused
    # unless listed here (comma-separated CIDRs, addresses or host names).
    outbound_allowlist: str = ""
    max_response_bytes: int = 1024 * 1024
    circuit_failure_threshold: int = 5  # failures in a row that open a host's circuit
    circuit_cooldown_seconds: float = 30.0
    # An OpenAI-compatible chat-completions endpoint for llm_service.
    llm_base_url: str = ""
    llm_api_key: str = ""
    llm_timeout_seconds: float = 60.0
    # The peers' simulated handlers (peer-a's, and call_external_service / llm of a
    # workflow submitted at POST /workflow) wait as the peers' do, times this; 0: no wait.
    simulated_latency: float = 1.0
    # Keys and limits. AUTH_DISABLED=1 is for local experiments only: every caller is admin.
    auth_disabled: bool = False
    # The peers' clients send no key. Set to a role (reader, writer, admin) to let callers
    # without one use the peers' paths (and only those) with that role; empty: keys needed.
    peer_keyless_role: str = ""
    # Per key, by role: high enough that a normal client never meets them, low enough to
    # stop a runaway loop. Triggers (POST /api/v1/executions, POST /workflow...) on top.
    rate_limit_reader: str = "200/second"
    rate_limit_writer: str = "200/second"
    rate_limit_admin: str = "400/second"
    rate_limit_trigger: str = "100/second"
    max_body_bytes: int = 1024 * 1024
    # Triggers are refused (503, Retry-After) while this many nodes wait for a worker (0: never).
    max_queued_nodes: int = 1000
    metrics_require_key: bool = False  # /metrics for any valid key rather than anyone
    # A worker or the scheduler serves its own /metrics here (0: off), for deployments
    # where it does not share PROMETHEUS_MULTIPROC_DIR with the API (separate containers).
    metrics_port: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Each field from its upper-case environment variable, else its default."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            if isinstance(f.default, bool):
                values[f.name] = raw.lower() in ("1", "true", "yes", "on")
            elif isinstance(f.default, int):
                values[f.name] = int(raw)
            elif isinstance(f.default, float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        return replace(cls(**values), **overrides)

    @property
    def handler_module_names(self) -> list[str]:
        return [name.strip() for name in self.handler_modules.split(",") if name.strip()]
