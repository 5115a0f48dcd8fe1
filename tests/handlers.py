"""Handlers for the tests only, loaded through HANDLER_MODULES=tests.handlers.

They record what they did in the test Redis (a stand-in for the outside world a
real handler would touch), so a test can tell how often and when a node ran.
"""

from __future__ import annotations

import os
import time
from functools import cache
from typing import Any

import marshmallow as ma
from redis import Redis

from app.handlers import HandlerError, NodeContext, handler


@cache
def _redis() -> Redis:
    return Redis.from_url(os.environ["REDIS_URL"])


def runs_key(execution_id: object, node_id: str) -> str:
    return f"test:runs:{execution_id}:{node_id}"


def _record(ctx: NodeContext, what: str) -> None:
    _redis().rpush(runs_key(ctx.execution_id, ctx.node_id), f"{what}:{ctx.attempt}:{time.time()}")


class SleepConfig(ma.Schema):
    seconds = ma.fields.Float(required=True)


@handler("sleep", schema=SleepConfig)
def sleep(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Holds its worker for `seconds` (unlike `delay`), recording its start and end."""
    _record(ctx, "start")
    try:
        deadline = time.monotonic() + config["seconds"]
        while time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        _record(ctx, "end")
    return {"slept": config["seconds"]}


class FlakyConfig(ma.Schema):
    fail_times = ma.fields.Integer(required=True)
    retry_after = ma.fields.Float(load_default=None, allow_none=True)
    retryable = ma.fields.Boolean(load_default=True)


@handler("flaky", schema=FlakyConfig)
def flaky(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Fails its first `fail_times` attempts (by the node's attempt number), then succeeds."""
    _record(ctx, "attempt")
    if ctx.attempt <= config["fail_times"]:
        raise HandlerError(
            f"attempt {ctx.attempt} fails on purpose",
            retryable=config["retryable"],
            retry_after=config["retry_after"],
            category="http_5xx",
        )
    return {"succeeded_on": ctx.attempt}


@handler("count")
def count(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Counts its runs; outputs its idempotency key."""
    _record(ctx, "run")
    return {"idempotency_key": ctx.idempotency_key, **config}


@handler("messy")
def messy(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Logs what a careless handler might: odd levels, NUL, non-JSON details; may fail likewise."""
    import datetime

    ctx.log("critical-x", "level nobody knows")
    ctx.log("warn", "nul \x00 inside", at=datetime.datetime.now(), blob=object())
    if config.get("fail"):
        raise HandlerError("bad \x00 message", retry_after="30 seconds", retryable=False)  # type: ignore[arg-type]
    return {"ok": True}


@handler("die_once")
def die_once(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Kills its own process on the first attempt (a segfault, an OOM kill)."""
    _record(ctx, "attempt")
    if ctx.attempt == 1:
        os._exit(1)
    return {"survived_on": ctx.attempt}


class HogConfig(ma.Schema):
    mb = ma.fields.Integer(required=True)


@handler("hog", schema=HogConfig)
def hog(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Allocates `mb` megabytes, a megabyte at a time (a handler with a leak or a bad idea)."""
    held = []
    for _ in range(config["mb"]):
        held.append(bytearray(1024 * 1024))
        held[-1][::4096] = b"x" * len(held[-1][::4096])  # touched: resident, not just reserved
    return {"held_mb": len(held)}


class BurnConfig(ma.Schema):
    seconds = ma.fields.Float(required=True)


@handler("burn", schema=BurnConfig)
def burn(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Keeps a core busy in Python for `seconds`."""
    _record(ctx, "start")
    deadline, spins = time.monotonic() + config["seconds"], 0
    while time.monotonic() < deadline:
        spins += sum(range(1000)) > 0
    return {"spins": spins}


class BigConfig(ma.Schema):
    chars = ma.fields.Integer(required=True)


@handler("big_output", schema=BigConfig)
def big_output(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Outputs a string of `chars` characters."""
    return {"text": "x" * config["chars"]}
