"""http_request and llm_service against local HTTP servers the tests start."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis

from app.config import Settings
from app.handlers.outbound import CircuitBreaker, OutboundPolicy, request
from app.handlers.registry import HandlerError
from tests.support import FakeServices

FAST_RETRY = {"max_attempts": 3, "backoff_seconds": 0.1, "max_backoff_seconds": 0.2}


def only_node(detail: dict[str, Any]) -> dict[str, Any]:
    (node,) = detail["nodes"]
    return node


def result(client: FlaskClient, detail: dict[str, Any], node_id: str = "call") -> Any:
    return client.get(f"/api/v1/executions/{detail['id']}/results").json["results"].get(node_id)


def test_a_json_get_and_a_post_with_headers_query_and_body(
    client: FlaskClient,
    fake_services: FakeServices,
    define: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
) -> None:
    workflow = define(
        [
            {"id": "get", "handler": "http_request", "config": {"url": fake_services.url("/json")}},
            {
                "id": "call",
                "handler": "call_external_service",
                "dependencies": ["get"],
                "config": {
                    "url": fake_services.url("/echo"),
                    "method": "POST",
                    "headers": {"X-Team": "orders"},
                    "params": {"page": 2},
                    "json": {"user_id": "{{ get.body.user.id }}"},
                },
            },
        ]
    )
    detail = run(workflow["id"])
    assert detail["status"] == "COMPLETED", detail
    got = result(client, detail, "get")
    assert got["status_code"] == 200 and got["body"] == {"user": {"id": 7, "name": "ada"}}
    assert got["elapsed_ms"] >= 0 and got["headers"]["content-type"] == "application/json"
    echo = result(client, detail)["body"]
    assert echo["method"] == "POST" and echo["query"] == {"page": "2"}
    assert echo["headers"]["X-Team"] == "orders"
    assert echo["body"] == '{"user_id": 7}'
    # the attempt's idempotency key goes with the call, so the service can drop a repeat
    assert echo["headers"]["Idempotency-Key"] == f"{detail['id']}:call"


def test_500_then_retry_then_200(
    client: FlaskClient,
    fake_services: FakeServices,
    define: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
) -> None:
    key = uuid.uuid4().hex
    url = fake_services.url(f"/flaky/{key}?fail=2")
    detail = run(define([{"id": "call", "handler": "http_request", "config": {"url": url}, "retry": FAST_RETRY}])["id"])
    node = only_node(detail)
    assert (node["status"], node["attempt"]) == ("COMPLETED", 3)
    assert result(client, detail)["body"] == {"calls": 3}
    # One key for every attempt of the node in this execution: the receiver can tell a retry.
    keys = [r["headers"]["Idempotency-Key"] for r in fake_services.requests if r["path"] == f"/flaky/{key}"]
    assert keys == [f"{detail['id']}:call"] * 3


def test_429_honours_retry_after(
    client: FlaskClient,
    fake_services: FakeServices,
    define: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
) -> None:
    url = fake_services.url(f"/ratelimited/{uuid.uuid4().hex}")
    detail = run(define([{"id": "call", "handler": "http_request", "config": {"url": url}, "retry": FAST_RETRY}])["id"])
    assert only_node(detail)["attempt"] == 2
    logs = client.get(f"/api/v1/executions/{detail['id']}/logs").json["items"]
    (wait,) = [e for e in logs if e["event"] == "node.up_for_retry"]
    assert wait["details"]["retry_in_seconds"] == 1.0 and wait["details"]["error"]["category"] == "http_4xx"


def test_other_4xx_fail_for_good(
    fake_services: FakeServices, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    url = fake_services.url("/status/404")
    detail = run(define([{"id": "call", "handler": "http_request", "config": {"url": url}, "retry": FAST_RETRY}])["id"])
    node = only_node(detail)
    assert (node["status"], node["attempt"], node["error"]["category"]) == ("FAILED", 1, "http_4xx")


def test_expected_status_makes_a_404_a_success(
    client: FlaskClient,
    fake_services: FakeServices,
    define: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
) -> None:
    config = {"url": fake_services.url("/status/404"), "expected_status": [200, 404]}
    detail = run(define([{"id": "call", "handler": "http_request", "config": config}])["id"])
    assert detail["status"] == "COMPLETED" and result(client, detail)["status_code"] == 404


def test_a_slow_server_hits_the_timeout_which_is_retried(
    fake_services: FakeServices, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    config = {"url": fake_services.url("/slow?seconds=3"), "timeout_seconds": 0.3}
    retry = {"max_attempts": 2, "backoff_seconds": 0.1, "max_backoff_seconds": 0.1}
    detail = run(define([{"id": "call", "handler": "http_request", "config": config, "retry": retry}])["id"])
    node = only_node(detail)
    assert (node["status"], node["attempt"], node["error"]["category"]) == ("FAILED", 2, "timeout")


def test_a_redirect_to_a_private_address_is_refused(
    fake_services: FakeServices, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    to_metadata = fake_services.url("/redirect?to=http://169.254.169.254/latest/meta-data/")
    detail = run(define([{"id": "call", "handler": "http_request", "config": {"url": to_metadata}}])["id"])
    node = only_node(detail)
    assert (node["status"], node["attempt"]) == ("FAILED", 1)
    assert node["error"]["category"] == "forbidden_destination" and "169.254.169.254" in node["error"]["message"]


def test_a_redirect_to_an_allowed_address_is_followed(
    client: FlaskClient,
    fake_services: FakeServices,
    define: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
) -> None:
    url = fake_services.url("/redirect?to=/json")
    detail = run(define([{"id": "call", "handler": "http_request", "config": {"url": url}}])["id"])
    assert result(client, detail)["body"]["user"]["id"] == 7 and result(client, detail)["url"].endswith("/json")


def test_a_response_over_the_cap_fails(
    fake_services: FakeServices, define: Callable[..., dict[str, Any]], run: Callable[..., dict[str, Any]]
) -> None:
    url = fake_services.url(f"/big?bytes={2 * 1024 * 1024}")
    detail = run(define([{"id": "call", "handler": "http_request", "config": {"url": url}}])["id"])
    assert only_node(detail)["error"]["category"] == "response_too_large"


def test_loopback_and_private_targets_are_refused_without_an_allow_list(fake_services: FakeServices) -> None:
    import httpx

    with httpx.Client() as client:
        for url in (fake_services.url("/json"), fake_services.url("/json", host="localhost"), "http://10.0.0.1/"):
            with pytest.raises(HandlerError) as refused:
                request(client, "GET", url, policy=OutboundPolicy())
            assert refused.value.category == "forbidden_destination" and not refused.value.retryable


def test_an_open_circuit_fails_fast_and_a_half_open_probe_closes_it(
    settings: Settings,
    fake_services: FakeServices,
    define: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
) -> None:
    # "localhost", not "127.0.0.1": a circuit of its own, so other tests' calls are not cut off.
    breaker = CircuitBreaker(Redis.from_url(settings.redis_url), settings.circuit_failure_threshold, 2.0)
    breaker.success("localhost")
    failing = define(
        [
            {
                "id": "call",
                "handler": "http_request",
                "config": {"url": fake_services.url("/status/503", "localhost")},
                "max_retries": 0,
            }
        ]
    )
    for _ in range(settings.circuit_failure_threshold):
        assert only_node(run(failing["id"]))["error"]["category"] == "http_5xx"
    assert breaker.state("localhost") == "open"
    healthy = define(
        [
            {
                "id": "call",
                "handler": "http_request",
                "config": {"url": fake_services.url("/json", "localhost")},
                "max_retries": 0,
            }
        ]
    )
    before = len(fake_services.requests)
    fast = only_node(run(healthy["id"]))
    assert fast["error"]["category"] == "circuit_open" and fast["error"]["retryable"] is True
    assert len(fake_services.requests) == before  # failed fast: the host was not called
    time.sleep(settings.circuit_cooldown_seconds + 0.2)
    assert breaker.state("localhost") == "half_open"
    assert only_node(run(healthy["id"]))["status"] == "COMPLETED"  # the probe
    assert breaker.state("localhost") == "closed"


def test_llm_service_calls_an_openai_compatible_endpoint(
    client: FlaskClient,
    fake_services: FakeServices,
    define: Callable[..., dict[str, Any]],
    run: Callable[..., dict[str, Any]],
) -> None:
    workflow = define(
        [
            {
                "id": "ask",
                "handler": "llm",
                "config": {
                    "model": "m-1",
                    "prompt": "summarise {{ input.doc }}",
                    "system": "be brief",
                    "temperature": 0.2,
                },
            }
        ]
    )
    detail = run(workflow["id"], {"doc": "the report"})
    output = result(client, detail, "ask")
    assert output["text"] == "echo: summarise the report" and output["answer"] == output["text"]
    assert output["model"] == "m-1" and output["usage"]["total_tokens"] == 7
    sent = next(r for r in reversed(fake_services.requests) if r["path"] == "/v1/chat/completions")
    assert sent["headers"]["Authorization"] == "Bearer test-key"
    assert '"temperature": 0.2' in sent["body"] and '"role": "system"' in sent["body"]
