"""llm_service (alias llm): a chat completion from an OpenAI-compatible endpoint.

The endpoint is the operator's (LLM_BASE_URL, LLM_API_KEY), so it is trusted:
it may be a private address. Without one, a workflow using the handler can be
defined, but its nodes fail for good, saying what to set.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import marshmallow as ma

from app.domain.retry import RetryPolicy
from app.handlers import outbound
from app.handlers.http import check_status
from app.handlers.registry import HandlerError, NodeContext, RunMode, handler


class LlmConfig(ma.Schema):
    model = ma.fields.String(load_default="gpt-4o-mini", validate=ma.validate.Length(min=1, max=200))
    prompt = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100_000))
    system = ma.fields.String(allow_none=True, load_default=None)
    temperature = ma.fields.Float(allow_none=True, load_default=None, validate=ma.validate.Range(min=0, max=2))
    max_tokens = ma.fields.Integer(allow_none=True, load_default=None, validate=ma.validate.Range(min=1, max=200_000))


def synthetic_completion(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """A dry run's answer; no endpoint needs to be configured. The text is one plain token,
    so a template that puts it in a URL (as peer-c's examples do) still makes a valid one;
    the prompt that would have been sent is in the output beside it."""
    text = "dry-run-answer-" + re.sub(r"[^A-Za-z0-9._-]+", "-", config["model"])
    return {
        "text": text,
        "answer": text,
        "prompt": config["prompt"],
        "model": config["model"],
        "finish_reason": "dry_run",
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "dry_run": True,
    }


@handler(
    "llm_service",
    schema=LlmConfig,
    aliases=("llm",),
    retry_policy=RetryPolicy(max_attempts=3, backoff_seconds=2.0, max_backoff_seconds=60.0),
    dry_run=synthetic_completion,
    mode=RunMode.CONCURRENT,
    output_aliases={"result": "text"},
)
def llm_service(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Asks a chat model; outputs its text, the model and the token usage."""
    clients = ctx.clients
    if not clients.llm_base_url:
        raise HandlerError(
            "no LLM endpoint is configured: set LLM_BASE_URL (and LLM_API_KEY) for the workers",
            category="configuration",
        )
    url = f"{clients.llm_base_url}/chat/completions"
    messages = ([{"role": "system", "content": config["system"]}] if config["system"] else []) + [
        {"role": "user", "content": config["prompt"]}
    ]
    payload: dict[str, Any] = {"model": config["model"], "messages": messages}
    for name in ("temperature", "max_tokens"):
        if config[name] is not None:
            payload[name] = config[name]
    headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.idempotency_key}
    if clients.llm_api_key:
        headers["Authorization"] = f"Bearer {clients.llm_api_key}"
    host = urlsplit(url).hostname or ""
    clients.circuit.before(host)
    try:
        response = outbound.request(
            clients.http,
            "POST",
            url,
            policy=clients.outbound,
            headers=headers,
            content=json.dumps(payload).encode(),
            timeout=clients.llm_timeout_seconds,
            trusted=True,
        )
    except HandlerError as err:
        if err.retryable:
            clients.circuit.failure(host)
        raise
    check_status(response, None, clients.circuit, host)
    return _completion(response.body)


def _completion(body: Any) -> dict[str, Any]:
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise HandlerError(
            f"the LLM endpoint answered without a completion: {str(body)[:200]}", category="validation"
        ) from err
    # `answer` too: peer engines' llm nodes output it, and their templates read it.
    return {
        "text": text,
        "answer": text,
        "model": body.get("model"),
        "finish_reason": choice.get("finish_reason"),
        "usage": body.get("usage") or {},
    }
