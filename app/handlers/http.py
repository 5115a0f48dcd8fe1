"""http_request (alias call_external_service): call an HTTP endpoint.

5xx, 429 (honouring Retry-After), connection errors and timeouts are retryable;
any other unexpected status is a permanent failure.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import marshmallow as ma

from app.domain.retry import RetryPolicy
from app.handlers import outbound
from app.handlers.registry import HandlerError, NodeContext, RunMode, handler

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class HttpConfig(ma.Schema):
    url = ma.fields.Url(required=True, schemes={"http", "https"}, require_tld=False)
    method = ma.fields.String(load_default="GET", validate=ma.validate.OneOf(METHODS))
    headers = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(), load_default=dict)
    params = ma.fields.Dict(keys=ma.fields.String(), load_default=dict, metadata={"description": "Query parameters"})
    json = ma.fields.Raw(allow_none=True, load_default=None, metadata={"description": "A JSON body"})
    text = ma.fields.String(allow_none=True, load_default=None, metadata={"description": "A text body"})
    body = ma.fields.Raw(
        allow_none=True,
        load_default=None,
        metadata={"description": "Either: an object or list is sent as JSON, text as text"},
    )
    timeout_seconds = ma.fields.Float(load_default=10.0, validate=ma.validate.Range(min=0.1, max=300))
    expected_status = ma.fields.List(
        ma.fields.Integer(validate=ma.validate.Range(min=100, max=599)),
        load_default=None,
        metadata={"description": "Statuses that count as success (default: any 2xx)"},
    )
    follow_redirects = ma.fields.Boolean(load_default=True)

    @ma.validates_schema
    def one_body(self, data: dict[str, Any], **_: Any) -> None:
        given = [name for name in ("json", "text", "body") if data.get(name) is not None]
        if len(given) > 1:
            raise ma.ValidationError(f"give one body, not {' and '.join(given)}", given[-1])


def given_body(config: dict[str, Any]) -> Any:
    """The one body the config gives (`json`, `text` or `body`; the schema allows one), or None."""
    return next((config[name] for name in ("json", "text", "body") if config[name] is not None), None)


def encode_body(config: dict[str, Any]) -> tuple[bytes | None, dict[str, str]]:
    """The request body and the content type it implies: text as text, anything else as JSON."""
    value = given_body(config)
    if value is None:
        return None, {}
    if isinstance(value, str):
        return value.encode(), {"Content-Type": "text/plain"}
    return json.dumps(value).encode(), {"Content-Type": "application/json"}


def synthetic_response(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """A dry run's answer: the first expected status (else 200) and a body that echoes the
    request that was not sent, so the wiring downstream can be checked."""
    sent = given_body(config)
    echo: dict[str, Any] = {"dry_run": True, "method": config["method"], "url": config["url"]}
    if config["params"]:
        echo["params"] = config["params"]
    if sent is not None:
        echo["request_body"] = sent
    return {
        "status_code": (config["expected_status"] or [200])[0],
        "headers": {"content-type": "application/json"},
        "body": echo,
        "elapsed_ms": 0.0,
        "url": config["url"],
        "dry_run": True,
    }


@handler(
    "http_request",
    schema=HttpConfig,
    aliases=("call_external_service",),
    retry_policy=RetryPolicy(max_attempts=3, backoff_seconds=1.0, max_backoff_seconds=30.0),
    dry_run=synthetic_response,
    # The peers' templates read a response as `{{ A.data }}` or `{{ fetch.result }}`.
    mode=RunMode.CONCURRENT,
    output_aliases={"data": "body", "result": "body"},
)
def http_request(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Calls an HTTP endpoint; outputs the status, headers, parsed body and time taken."""
    clients = ctx.clients
    host = urlsplit(config["url"]).hostname or ""
    content, content_headers = encode_body(config)
    # Forwarded so the service can drop a repeated attempt of the same node run.
    headers = {"Idempotency-Key": ctx.idempotency_key, **content_headers, **config["headers"]}
    clients.circuit.before(host)
    try:
        response = outbound.request(
            clients.http,
            config["method"],
            config["url"],
            policy=clients.outbound,
            headers=headers,
            params=config["params"],
            content=content,
            timeout=config["timeout_seconds"],
            follow_redirects=config["follow_redirects"],
        )
    except HandlerError as err:
        if err.retryable:
            clients.circuit.failure(host)
        raise
    check_status(response, config["expected_status"], clients.circuit, host)
    return {
        "status_code": response.status_code,
        "headers": response.headers,
        "body": response.body,
        "elapsed_ms": response.elapsed_ms,
        "url": response.url,
    }


def check_status(
    response: outbound.Response, expected: list[int] | None, circuit: outbound.CircuitBreaker, host: str
) -> None:
    """Raise the HandlerError an unexpected status calls for; count it for the host's circuit."""
    status = response.status_code
    if status >= 500:
        circuit.failure(host)
        raise HandlerError(f"{response.url} answered {status}", retryable=True, category="http_5xx")
    circuit.success(host)
    if (expected is not None and status in expected) or (expected is None and 200 <= status < 300):
        return
    if status == 429:
        retry_after = outbound.retry_after_seconds(response.headers.get("retry-after"))
        raise HandlerError(
            f"{response.url} answered 429 (too many requests)",
            retryable=True,
            retry_after=retry_after,
            category="http_4xx",
        )
    category = "http_4xx" if 400 <= status < 500 else "unexpected_status"
    raise HandlerError(f"{response.url} answered {status}: {str(response.body)[:200]}", category=category)
