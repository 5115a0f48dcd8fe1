"""The root peers' (peer-c's, peer-e's) simulated handlers, for workflows submitted at
POST /workflow: in those engines `call_external_service` and the LLM handlers never call
out, and their examples point at hosts that do not exist. So here they answer as the
peers' do, after the peers' latency, whatever `url` text the templates made;
`http_request` stays the real one.

Where peer-c and peer-e disagree, one output carries both shapes where they do not
collide: `status` is peer-c's "ok" (peer-e's "success" would collide), `data`/`answer` are
peer-c's, `result` is peer-e's; `noop` adds its config beside peer-c's `status`, as
Stepwise's own noop outputs its config.

Registered as `peers.<name>`; POST /workflow maps the peers' names to them (PEER_NAMES).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from app.domain.retry import RetryPolicy
from app.handlers.clients import simulated_wait
from app.handlers.registry import NodeContext, RunMode, handler

PREFIX = "peers."
RETRIES = RetryPolicy(max_attempts=3, backoff_seconds=1.0, max_backoff_seconds=60.0)


@handler(PREFIX + "noop", mode=RunMode.INLINE)
def noop(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """peer-c's noop, {"status": "ok"}, with Stepwise's (its config) beside it."""
    return {"status": "ok", **config}


@handler(PREFIX + "call_external_service", mode=RunMode.CONCURRENT, retry_policy=RETRIES)
def call_external_service(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """A simulated call (nothing is sent): after 1 to 2 s, peer-c's {status, data}, peer-e's {result}, and
    the status_code of a call that went well."""
    url = str(config.get("url", ""))
    simulated_wait(ctx, 1.0, 2.0)
    return {
        "status": "ok",
        "status_code": 200,
        "data": f"Simulated call to {url}",
        "result": {
            "id": ctx.node_id,
            "url": url,
            "method": str(config.get("method", "GET")).upper(),
            "timestamp": datetime.now(UTC).isoformat(),
            "message": "Mock external service response",
        },
    }


@handler(PREFIX + "llm", mode=RunMode.CONCURRENT, retry_policy=RETRIES)
def llm(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """A simulated LLM: after 1 to 2 s, peer-c's {status, answer} and peer-e's {result, model, tokens}."""
    prompt = str(config.get("prompt", ""))
    simulated_wait(ctx, 1.0, 2.0)
    return {
        "status": "ok",
        "answer": f"Simulated response for: {prompt}",
        "result": f"Mock LLM response for prompt: {prompt[:50]}...",
        "model": config.get("model", "gpt-4"),
        "tokens": random.randint(50, 500),
    }


# The peers' names, at POST /workflow, for the handlers above; every other name is Stepwise's
# own (peer-c's `unreliable_handler` is Stepwise's `unreliable`, which fails half the time).
PEER_NAMES = {
    "noop": PREFIX + "noop",
    "call_external_service": PREFIX + "call_external_service",
    "llm": PREFIX + "llm",
    "llm_service": PREFIX + "llm",
}
