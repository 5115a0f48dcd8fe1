"""The small built-in handlers: noop, log and compute."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import marshmallow as ma

from app.handlers.registry import HandlerError, NodeContext, RunMode, handler

LEVELS = ("debug", "info", "warning", "error")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@handler("noop", mode=RunMode.INLINE)
def noop(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Does nothing and outputs its (resolved) config, which makes it handy for wiring tests."""
    return config


class LogConfig(ma.Schema):
    message = ma.fields.String(required=True)
    level = ma.fields.String(load_default="info", validate=ma.validate.OneOf(LEVELS))


def fill_placeholders(message: str, values: Mapping[str, Any]) -> str:
    """Replace `{key}` with the input's value, as peer-d does; unknown keys stay as written.

    A plain regex rather than str.format: format strings can reach attributes
    (`{x.__class__}`), and a message must never read more than the input.
    """
    return _PLACEHOLDER.sub(lambda m: str(values[m[1]]) if m[1] in values else m[0], message)


@handler("log", schema=LogConfig, mode=RunMode.INLINE)
def log(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Writes a message, with `{key}` placeholders filled from the input, to the execution's log."""
    message = fill_placeholders(config["message"], ctx.input)
    ctx.log(config["level"], message)
    return {"message": message, "level": config["level"]}


OPERATIONS = ("add", "subtract", "multiply", "divide", "power", "modulo", "min", "max")


class ComputeConfig(ma.Schema):
    operation = ma.fields.String(required=True, validate=ma.validate.OneOf(OPERATIONS))
    a = ma.fields.Float(required=True, allow_nan=False)
    b = ma.fields.Float(required=True, allow_nan=False)


@handler("compute", schema=ComputeConfig, mode=RunMode.INLINE)
def compute(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Arithmetic on two numbers: add, subtract, multiply, divide, power, modulo, min, max."""
    op, a, b = config["operation"], config["a"], config["b"]
    if op in ("divide", "modulo") and b == 0:
        raise HandlerError(f"node {ctx.node_id!r}: division by zero ({op} {a} by 0)", category="validation")
    try:
        result = {
            "add": lambda: a + b,
            "subtract": lambda: a - b,
            "multiply": lambda: a * b,
            "divide": lambda: a / b,
            "power": lambda: a**b,
            "modulo": lambda: a % b,
            "min": lambda: min(a, b),
            "max": lambda: max(a, b),
        }[op]()
    except (OverflowError, ZeroDivisionError, ValueError) as err:
        raise HandlerError(f"node {ctx.node_id!r}: {op} failed: {err}", category="validation") from err
    if isinstance(result, complex) or not math.isfinite(result):
        raise HandlerError(f"node {ctx.node_id!r}: {op} has no finite real result", category="validation")
    return {"result": int(result) if float(result).is_integer() and abs(result) < 2**53 else result}


class FailConfig(ma.Schema):
    message = ma.fields.String(load_default="failed on purpose")
    retryable = ma.fields.Boolean(load_default=False)
    retry_after = ma.fields.Float(allow_none=True, load_default=None, validate=ma.validate.Range(min=0, max=86400))
    category = ma.fields.String(load_default="handler_error", validate=ma.validate.Length(min=1, max=40))


@handler("fail", schema=FailConfig, mode=RunMode.INLINE)
def fail(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Fails with the given message, retryable or not (for tests and demos)."""
    raise HandlerError(
        config["message"],
        retryable=config["retryable"],
        retry_after=config["retry_after"],
        category=config["category"],
    )
