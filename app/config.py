"""Settings, read from the environment. No other module reads os.environ."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any

# `make run` starts PostgreSQL and Redis on these ports when no URL is given;
# they stay clear of the standard ones so a machine's own servers are untouched.
LOCAL_DATABASE_URL = "postgresql://stepwise@127.0.0.1:55432/stepwise"
LOCAL_REDIS_URL = "redis://127.0.0.1:56379/0"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Every number is a count, a size, a duration or a port: none is below 0. Fields marked
# _POSITIVE cannot be 0 either (the comment on each says why).
_POSITIVE = {"positive": True}


class SettingsError(ValueError):
    """A variable in the environment whose value cannot be used; the message names both."""


@dataclass(frozen=True)
class Settings:
    database_url: str = LOCAL_DATABASE_URL
    redis_url: str = LOCAL_REDIS_URL
    queue_name: str = "stepwise"
    # SimpleWorker runs nodes in the worker process; "fork" forks per job (RQ's Worker).
    worker_class: str = "simple"
    # HTTP and LLM nodes one worker keeps in flight at once (its thread pool).
    worker_concurrency: int = field(default=32, metadata=_POSITIVE)  # 0: no threads to run them
    # How long a worker goes on running the in-process nodes its own finishes ready before
    # it hands what is ready to the queue, where other executions' jobs wait.
    worker_slice_ms: int = 100
    # The most nodes one RQ job carries (a job carries at least one).
    job_max_nodes: int = field(default=200, metadata=_POSITIVE)
    # What one node may take of its worker (it fails for good past these; the worker lives):
    # its config once templates are resolved, its output, and the worker's memory it grows.
    max_resolved_config_bytes: int = 1024 * 1024
    max_output_bytes: int = 2 * 1024 * 1024
    node_memory_limit_mb: int = 512
    max_nodes: int = 10_000
    max_edges: int = 100_000
    max_node_config_bytes: int = 10 * 1024
    # A node's own timeout_seconds must be 1 or more (app/domain/dag.py), so must these.
    default_node_timeout_seconds: int = field(default=300, metadata=_POSITIVE)
    max_node_timeout_seconds: int = field(default=3600, metadata=_POSITIVE)
    db_pool_size: int = 5
    log_level: str = "INFO"
    # Comma-separated modules whose @handler functions to register, in the API and workers alike.
    handler_modules: str = ""
    # The scheduler: how often it looks, and when it calls a node lost.
    scheduler_interval_seconds: float = field(default=1.0, metadata=_POSITIVE)  # 0: a loop that never waits
    queued_grace_seconds: int = 5  # QUEUED this long with no RQ job: enqueue it again
    # A worker silent this long has lost its RUNNING nodes: three heartbeats missed, so a
    # dead worker's nodes run again within about 8 s (a tick and a heartbeat later).
    # 0 would call every RUNNING node lost at once, or beat in a loop that never waits.
    worker_lost_seconds: int = field(default=6, metadata=_POSITIVE)
    worker_heartbeat_seconds: int = field(default=2, metadata=_POSITIVE)
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
    metrics_port: int = field(default=0, metadata={"maximum": 65535})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Each field from its upper-case environment variable, else its default. A value
        that is not of the field's type, or out of its range, raises SettingsError."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f, raw)
        return replace(cls(**values), **overrides)

    @property
    def handler_module_names(self) -> list[str]:
        return [name.strip() for name in self.handler_modules.split(",") if name.strip()]


def _parse(f: Field[Any], raw: str) -> Any:
    """One variable's value as its field's type (bool, int, float or str), checked."""
    name = f.name.upper()
    if isinstance(f.default, bool):  # before int: a bool is an int
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            raise SettingsError(f"{name}={raw!r} is not a boolean (1/0, true/false, yes/no, on/off)")
        return word in _TRUE
    number: int | float
    if isinstance(f.default, int):
        try:
            number = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
    elif isinstance(f.default, float):
        try:
            number = float(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a number") from None
        if not math.isfinite(number):
            raise SettingsError(f"{name}={raw!r} is not a finite number")
    else:
        return raw
    if number < 0:
        raise SettingsError(f"{name}={raw!r} must be 0 or more")
    if f.metadata.get("positive") and number == 0:
        raise SettingsError(f"{name}={raw!r} must be more than 0")
    maximum = f.metadata.get("maximum")
    if maximum is not None and number > maximum:
        raise SettingsError(f"{name}={raw!r} must be at most {maximum}")
    return number
