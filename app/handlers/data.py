"""Handlers that shape data: data_transform, transform, aggregate."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jmespath
import marshmallow as ma
from jmespath.exceptions import JMESPathError

from app.handlers.registry import HandlerError, NodeContext, RunMode, handler

TRANSFORM_TYPES = ("pick", "omit", "rename", "set", "query")


class TransformStep(ma.Schema):
    type = ma.fields.String(required=True, validate=ma.validate.OneOf(TRANSFORM_TYPES))
    # fields_, loaded from and shown as `fields`: Schema.fields is marshmallow's own (as from_ for `from`).
    fields_ = ma.fields.List(
        ma.fields.String(), data_key="fields", load_default=None, metadata={"description": "pick, omit"}
    )
    from_ = ma.fields.String(data_key="from", load_default=None, metadata={"description": "rename"})
    to = ma.fields.String(load_default=None, metadata={"description": "rename"})
    key = ma.fields.String(load_default=None, metadata={"description": "set"})
    value = ma.fields.Raw(load_default=None, allow_none=True, metadata={"description": "set"})
    expression = ma.fields.String(load_default=None, metadata={"description": "query: a JMESPath expression"})
    into = ma.fields.String(load_default=None, metadata={"description": "query: store under this key, not replace"})

    @ma.validates_schema
    def needs(self, data: dict[str, Any], **_: Any) -> None:
        required = {
            "pick": ["fields_"],
            "omit": ["fields_"],
            "rename": ["from_", "to"],
            "set": ["key"],
            "query": ["expression"],
        }
        for name in required[data["type"]]:
            if data.get(name) is None:
                raise ma.ValidationError(f"{data['type']} needs {name.rstrip('_')}", name.rstrip("_"))
        if data["type"] == "query":
            try:
                jmespath.compile(data["expression"])
            except JMESPathError as err:
                raise ma.ValidationError(f"not a JMESPath expression: {err}", "expression") from err


class DataTransformConfig(ma.Schema):
    input = ma.fields.Raw(
        load_default=None, allow_none=True, metadata={"description": "The document (default: the execution input)"}
    )
    transforms = ma.fields.List(ma.fields.Nested(TransformStep), required=True, validate=ma.validate.Length(min=1))


@handler("data_transform", schema=DataTransformConfig, mode=RunMode.INLINE)
def data_transform(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Applies pick, omit, rename, set and JMESPath query steps, in order, to a JSON document."""
    document: Any = copy.deepcopy(config["input"] if config["input"] is not None else dict(ctx.input))
    for i, step in enumerate(config["transforms"]):
        kind = step["type"]
        if kind == "query":
            result = jmespath.search(step["expression"], document)
            document = {**_object(document, i), step["into"]: result} if step["into"] else result
            continue
        document = _object(document, i)
        if kind == "pick":
            document = {k: v for k, v in document.items() if k in step["fields_"]}
        elif kind == "omit":
            document = {k: v for k, v in document.items() if k not in step["fields_"]}
        elif kind == "rename":
            if step["from_"] in document:
                document[step["to"]] = document.pop(step["from_"])
        else:  # set
            document[step["key"]] = step["value"]
    return {"result": document}


def _object(document: Any, step: int) -> dict[str, Any]:
    if not isinstance(document, Mapping):
        raise HandlerError(
            f"transforms[{step}] needs an object, and the document is a {type(document).__name__}",
            category="validation",
        )
    return dict(document)


STRING_OPS = ("uppercase", "lowercase", "title", "strip", "reverse", "length", "split", "replace")


class TransformConfig(ma.Schema):
    input = ma.fields.Raw(required=True)
    transform_type = ma.fields.String(required=True, validate=ma.validate.OneOf(STRING_OPS))
    separator = ma.fields.String(
        load_default=None, allow_none=True, metadata={"description": "split (default: whitespace)"}
    )
    old = ma.fields.String(load_default=None, metadata={"description": "replace"})
    new = ma.fields.String(load_default="", metadata={"description": "replace"})


@handler("transform", schema=TransformConfig, mode=RunMode.INLINE)
def transform(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """String operations: uppercase, lowercase, title, strip, reverse, length, split, replace."""
    value, op = config["input"], config["transform_type"]
    if op in ("reverse", "length") and isinstance(value, list):
        return {"result": value[::-1] if op == "reverse" else len(value)}
    text = value if isinstance(value, str) else str(value)
    if op == "replace":
        if config["old"] is None:
            raise HandlerError("replace needs `old`", category="validation")
        return {"result": text.replace(config["old"], config["new"])}
    result = {
        "uppercase": text.upper,
        "lowercase": text.lower,
        "title": text.title,
        "strip": text.strip,
        "reverse": lambda: text[::-1],
        "length": lambda: len(text),
        "split": lambda: text.split(config["separator"]),
    }[op]()
    return {"result": result}


AGGREGATES = ("sum", "count", "min", "max", "avg", "concat", "list", "merge")


class AggregateConfig(ma.Schema):
    inputs = ma.fields.List(ma.fields.Raw(allow_none=True), required=True)
    aggregate_type = ma.fields.String(required=True, validate=ma.validate.OneOf(AGGREGATES))


@handler("aggregate", schema=AggregateConfig, mode=RunMode.INLINE)
def aggregate(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Combines a list (usually templated from several parents): sum, count, min, max, avg, concat, list, merge."""
    items, kind = config["inputs"], config["aggregate_type"]
    if kind == "count":
        return {"result": len(items)}
    if kind == "list":
        return {"result": items}
    if kind == "concat":
        if all(isinstance(i, list) for i in items):
            return {"result": [x for i in items for x in i]}
        return {"result": "".join(str(i) for i in items)}
    if kind == "merge":
        if not all(isinstance(i, Mapping) for i in items):
            raise HandlerError(f"node {ctx.node_id!r}: merge needs objects", category="validation")
        merged: dict[str, Any] = {}
        for item in items:
            merged.update(item)
        return {"result": merged}
    numbers = [i for i in items if isinstance(i, int | float) and not isinstance(i, bool)]
    if len(numbers) != len(items):
        raise HandlerError(f"node {ctx.node_id!r}: {kind} needs numbers", category="validation")
    if not numbers:
        if kind == "sum":
            return {"result": 0}
        raise HandlerError(f"node {ctx.node_id!r}: {kind} of nothing", category="validation")
    reducers: dict[str, Callable[[Sequence[float]], float]] = {
        "sum": sum,
        "min": min,
        "max": max,
        "avg": lambda n: sum(n) / len(n),
    }
    result = reducers[kind](numbers)
    return {"result": result}
