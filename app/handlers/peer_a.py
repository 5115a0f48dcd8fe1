"""peer-a's handlers, for workflows submitted through peer-a's API (/api/v1/workflow):
simulations that never call out, with the outputs and latencies peer-a's clients read
(shared/reference/peer-a-contract.md, section 3), and `echo` and `delay`, which its tests
use. Their configs follow peer-a's template rules (dialect "peer-a").

Registered as `peer_a.<name>`; peer-a's API takes and shows the plain names.
"""

from __future__ import annotations

import random
import time
from typing import Any

from app.domain import peer_a
from app.domain.retry import RetryPolicy
from app.handlers.clients import simulated_wait
from app.handlers.registry import PEER_A, Defer, HandlerError, NodeContext, RunMode, handler

PREFIX = "peer_a."
# peer-a has no node timeout; a delay node gets the longest Stepwise allows, and waits at most that.
MAX_DELAY_SECONDS = 3600
# peer-a: 3 attempts, waiting about 1, 2, 4 s between them.
RETRIES = RetryPolicy(max_attempts=3, backoff_seconds=1.0, max_backoff_seconds=30.0)
LLM_ANSWERS = (
    "This is a simulated response from the language model.",
    "The analysis indicates positive results across all metrics.",
    "Based on the input, the recommended action is to proceed.",
    "The data has been processed and summarized successfully.",
)


def _fails(config: dict[str, Any]) -> bool:
    return bool(config.get("simulate_failure"))


@handler(PREFIX + "input", mode=RunMode.CONCURRENT, retry_policy=RETRIES, dialect=PEER_A)
def input_(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """peer-a's input: {"initialized": true, ...its config} after 100 ms."""
    simulated_wait(ctx, 0.1)
    return {"initialized": True, **config}


@handler(PREFIX + "output", mode=RunMode.CONCURRENT, retry_policy=RETRIES, dialect=PEER_A)
def output(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """peer-a's output: {"aggregated": true, "config": its config} after 100 ms."""
    simulated_wait(ctx, 0.1)
    return {"aggregated": True, "config": config}


@handler(PREFIX + "call_external_service", mode=RunMode.CONCURRENT, retry_policy=RETRIES, dialect=PEER_A)
def call_external_service(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """peer-a's simulated call (no request is sent): 1 to 2 s, then {status_code, url, data}."""
    url = config.get("url", "http://example.com/api")
    simulated_wait(ctx, 1.0, 2.0)
    if _fails(config):
        raise HandlerError(f"Simulated failure for external service at {url}", retryable=True)
    return {
        "status_code": 200,
        "url": url,
        "data": {"id": random.randint(1, 1000), "result": f"Mock response from {url}", "timestamp": time.monotonic()},
    }


@handler(PREFIX + "call_llm", mode=RunMode.CONCURRENT, retry_policy=RETRIES, dialect=PEER_A)
def call_llm(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """peer-a's simulated LLM: 1.5 to 2.5 s, then {model, temperature, max_tokens, prompt, response, tokens_used}."""
    simulated_wait(ctx, 1.5, 2.5)
    if _fails(config):
        raise HandlerError("Simulated LLM service failure", retryable=True)
    max_tokens = config.get("max_tokens", 1000)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 100:
        raise HandlerError(f"max_tokens must be an integer of at least 100, not {max_tokens!r}", retryable=True)
    return {
        "model": config.get("model", "gpt-4"),
        "temperature": config.get("temperature", 0.7),
        "max_tokens": max_tokens,
        "prompt": config.get("prompt", "No prompt provided"),
        "response": random.choice(LLM_ANSWERS),
        "tokens_used": random.randint(100, max_tokens),
    }


@handler(PREFIX + "decision", mode=RunMode.INLINE, retry_policy=RETRIES, dialect=PEER_A)
def decision(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """peer-a's decision: {"result": value_a <operator> value_b} (text or number compare)."""
    return {"result": peer_a.decide(config.get("value_a"), str(config.get("operator", "==")), config.get("value_b"))}


@handler(PREFIX + "echo", mode=RunMode.INLINE, retry_policy=RETRIES, dialect=PEER_A)
def echo(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Its config back, with `message` first (peer-a's tests use it)."""
    return {"message": config.get("message"), **config}


@handler(PREFIX + "delay", mode=RunMode.INLINE, retry_policy=RETRIES, dialect=PEER_A)
def delay(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Waits `seconds` (peer-a's tests use it) in PostgreSQL, holding no worker, then {"delayed": seconds}."""
    seconds = config.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_DELAY_SECONDS:
        raise HandlerError(f"seconds must be a number from 0 to {MAX_DELAY_SECONDS}", category="validation")
    if ctx.woke_from is None and seconds > 0:
        raise Defer(seconds)
    return {"delayed": seconds}
