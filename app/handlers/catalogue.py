"""The handler catalogue as data: names, aliases, retry defaults, config as JSON Schema."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from app.handlers.registry import Handler, registry

# Nested schemas inline (no $ref to components), so each config schema stands alone. apispec
# documents a resolver's None as "inline this one", but types the resolver as returning str.
_PLUGIN = MarshmallowPlugin(schema_name_resolver=lambda schema: None)  # type: ignore[arg-type,return-value]
APISpec("handlers", "1", "3.0.3", plugins=[_PLUGIN])  # sets _PLUGIN.converter


def json_schema(schema: type[ma.Schema]) -> dict[str, Any]:
    """A handler's config schema as JSON Schema."""
    assert _PLUGIN.converter is not None  # set by APISpec(...) above
    converted = _PLUGIN.converter.schema2jsonschema(schema())
    unknown = getattr(schema.Meta, "unknown", ma.RAISE) if hasattr(schema, "Meta") else ma.RAISE
    converted["additionalProperties"] = unknown == ma.INCLUDE
    return converted


def describe(handler: Handler) -> dict[str, Any]:
    """One handler, as GET /api/v1/handlers shows it."""
    return {
        "name": handler.name,
        "aliases": list(handler.aliases),
        "description": handler.description,
        "retry": {
            "max_attempts": handler.retry.max_attempts,
            "backoff_seconds": handler.retry.backoff_seconds,
            "max_backoff_seconds": handler.retry.max_backoff_seconds,
        },
        "config_schema": json_schema(handler.schema),
    }


def catalogue() -> list[dict[str, Any]]:
    """Every registered handler, by name."""
    return [describe(h) for h in registry.handlers()]
