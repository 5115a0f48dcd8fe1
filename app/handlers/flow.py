"""Handlers that shape the run: conditional, delay, unreliable."""

from __future__ import annotations

import random
from typing import Any

import marshmallow as ma

from app.domain import conditions
from app.handlers.registry import Defer, HandlerError, NodeContext, RunMode, handler

MAX_DELAY_SECONDS = 7 * 24 * 3600


class ConditionalConfig(ma.Schema):
    condition = ma.fields.Dict(required=True)
    input = ma.fields.Raw(
        load_default=None,
        allow_none=True,
        metadata={"description": "What the condition reads (default: the execution input)"},
    )

    @ma.validates("condition")
    def valid_condition(self, value: dict[str, Any], **_: Any) -> None:
        found = conditions.problems(value)
        if found:
            raise ma.ValidationError({field.removeprefix("condition.") or "_": [message] for field, message in found})


@handler("conditional", schema=ConditionalConfig, mode=RunMode.INLINE)
def conditional(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Evaluates {field, operator, value} (or all/any lists of them); outputs {"result": true|false}."""
    document = config["input"] if config["input"] is not None else dict(ctx.input)
    try:
        return {"result": conditions.evaluate(config["condition"], document)}
    except conditions.ConditionError as err:
        raise HandlerError(f"node {ctx.node_id!r}: {err}", category="validation") from err


class DelayConfig(ma.Schema):
    seconds = ma.fields.Float(required=True, validate=ma.validate.Range(min=0, max=MAX_DELAY_SECONDS))


@handler("delay", schema=DelayConfig, mode=RunMode.INLINE)
def delay(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Waits `seconds` in PostgreSQL, holding no worker; the scheduler wakes the node."""
    if ctx.woke_from is None and config["seconds"] > 0:
        raise Defer(config["seconds"])
    return {"waited_seconds": config["seconds"]}


class UnreliableConfig(ma.Schema):
    failure_rate = ma.fields.Float(load_default=0.5, validate=ma.validate.Range(min=0, max=1))
    seed = ma.fields.Integer(load_default=0)


@handler("unreliable", schema=UnreliableConfig, aliases=("unreliable_handler",), mode=RunMode.INLINE)
def unreliable(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Fails (retryably) with probability `failure_rate`, from a generator seeded per attempt."""
    rng = random.Random(f"{config['seed']}:{ctx.execution_id}:{ctx.node_id}:{ctx.attempt}")
    if rng.random() < config["failure_rate"]:
        raise HandlerError(f"unreliable node {ctx.node_id!r} failed attempt {ctx.attempt}", retryable=True)
    return {"ok": True, "attempt": ctx.attempt}
