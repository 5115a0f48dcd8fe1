"""The clients handlers use to reach the outside world (HTTP, the LLM endpoint, the circuit
breakers), built once per worker process."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
from redis import Redis

from app.config import Settings
from app.handlers.outbound import CircuitBreaker, OutboundPolicy


@dataclass
class HandlerClients:
    http: httpx.Client
    outbound: OutboundPolicy
    circuit: CircuitBreaker
    llm_base_url: str
    llm_api_key: str
    llm_timeout_seconds: float
    # The peers' simulated handlers wait as the peers' do, times this (0: not at all).
    simulated_latency: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None) -> HandlerClients:
        """Clients as the settings say; Redis carries the circuit breakers' state."""
        return cls(
            # Redirects and connection targets are handled by outbound.request.
            http=httpx.Client(follow_redirects=False, trust_env=False),
            outbound=OutboundPolicy.parse(settings.outbound_allowlist, settings.max_response_bytes),
            circuit=CircuitBreaker(redis, settings.circuit_failure_threshold, settings.circuit_cooldown_seconds),
            llm_base_url=settings.llm_base_url.rstrip("/"),
            llm_api_key=settings.llm_api_key,
            llm_timeout_seconds=settings.llm_timeout_seconds,
            simulated_latency=settings.simulated_latency,
        )


def simulated_wait(ctx: Any, low: float, high: float | None = None) -> None:
    """The latency of a peer's simulated handler (uniform in [low, high]), times
    SIMULATED_LATENCY; none without clients (unit tests)."""
    scale = ctx.clients.simulated_latency if ctx.clients is not None else 0.0
    if scale > 0:
        time.sleep(random.uniform(low, high if high is not None else low) * scale)
