"""Dry runs and output aliases at the handler registry: what replaces a call, and what
templates may read."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.handlers import NodeContext, registry
from app.handlers.registry import Handler, HandlerRegistry, handler


def ctx(dry_run: bool) -> NodeContext:
    return NodeContext(uuid.uuid4(), "n", 1, {}, dry_run=dry_run)


@pytest.fixture
def calls() -> tuple[HandlerRegistry, list[str]]:
    local, seen = HandlerRegistry(), []

    def stand_in(config: dict[str, Any], _: NodeContext) -> dict[str, Any]:
        seen.append("stand-in")
        return {"dry_run": True}

    @handler("side_effect", dry_run=stand_in, output_aliases={"data": "body"}, into=local)
    def side_effect(config: dict[str, Any], _: NodeContext) -> dict[str, Any]:
        seen.append("real")
        return {"body": {"x": 1}}

    @handler("pure", into=local)
    def pure(config: dict[str, Any], _: NodeContext) -> dict[str, Any]:
        seen.append("pure")
        return {"ok": True}

    return local, seen


def test_the_stand_in_runs_only_in_a_dry_run_and_says_so(calls: tuple[HandlerRegistry, list[str]]) -> None:
    local, seen = calls
    real = local.get("side_effect").run({}, ctx(dry_run=False))
    dry_ctx = ctx(dry_run=True)
    dry = local.get("side_effect").run({}, dry_ctx)
    local.get("pure").run({}, ctx(dry_run=True))  # no side effects: runs as usual
    assert seen == ["real", "stand-in", "pure"]
    assert real == {"body": {"x": 1}} and dry == {"dry_run": True}
    assert [line.details for line in dry_ctx.logs] == [{"dry_run": True}]


def test_aliases_are_read_not_stored(calls: tuple[HandlerRegistry, list[str]]) -> None:
    local, _ = calls
    output = {"body": {"x": 1}}
    assert local.readable_output("side_effect", output) == {"body": {"x": 1}, "data": {"x": 1}}
    assert output == {"body": {"x": 1}}  # the stored output is untouched
    assert local.readable_output("side_effect", {"body": 1, "data": 2})["data"] == 2  # a real key wins
    assert local.readable_output("side_effect", ["not", "an", "object"]) == ["not", "an", "object"]
    assert local.readable_output("unknown", output) is output


def load(name: str, config: dict[str, Any]) -> tuple[Handler, dict[str, Any]]:
    return registry.get(name), registry.load_config(name, config)


def test_an_http_dry_run_echoes_the_request_it_did_not_send() -> None:
    http, config = load(
        "call_external_service",
        {"url": "http://service-a/orders", "method": "POST", "json": {"id": 7}, "expected_status": [202, 200]},
    )
    output = http.run(config, ctx(dry_run=True))
    assert output["dry_run"] is True and output["status_code"] == 202
    sent = {"dry_run": True, "method": "POST", "url": "http://service-a/orders", "request_body": {"id": 7}}
    assert output["body"] == sent
    assert registry.readable_output("call_external_service", output)["data"] == output["body"]
    assert registry.readable_output("http_request", output)["result"] == output["body"]


def test_an_llm_dry_run_needs_no_endpoint_and_answers_one_url_safe_token() -> None:
    llm, config = load("llm", {"prompt": "Summarize {}", "model": "meta/llama 3"})
    output = llm.run(config, ctx(dry_run=True))  # no LLM_BASE_URL, no services: nothing is called
    assert output["answer"] == output["text"] == "dry-run-answer-meta-llama-3"
    assert output["prompt"] == "Summarize {}" and output["dry_run"] is True
