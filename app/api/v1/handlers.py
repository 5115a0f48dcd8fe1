"""/api/v1/handlers: what nodes can do, and what config each handler takes."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from app.api.errors import ErrorSchema
from app.api.parsing import Blueprint
from app.domain.errors import NotFoundError
from app.handlers import catalogue, registry

blp = Blueprint("handlers", __name__, url_prefix="/api/v1/handlers", description="The node handler catalogue")


class RetryDefaultsSchema(ma.Schema):
    max_attempts = ma.fields.Integer()
    backoff_seconds = ma.fields.Float()
    max_backoff_seconds = ma.fields.Float()


class HandlerSchema(ma.Schema):
    name = ma.fields.String()
    aliases = ma.fields.List(ma.fields.String())
    description = ma.fields.String()
    retry = ma.fields.Nested(RetryDefaultsSchema, metadata={"description": "Its nodes' retry policy by default"})
    config_schema = ma.fields.Dict(metadata={"description": "The node config it takes, as JSON Schema"})


@blp.route("")
class Handlers(MethodView):
    @blp.response(200, HandlerSchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """List every handler with its config schema"""
        return catalogue.catalogue()


@blp.route("/<string:name>")
class HandlerByName(MethodView):
    @blp.response(200, HandlerSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, name: str) -> dict[str, Any]:
        """Get one handler (by name or alias)"""
        if name not in registry.names():
            raise NotFoundError(f"no handler {name!r}")
        return catalogue.describe(registry.get(name))
