"""/api/v1/admin/keys: API keys (admin only). A key is shown once, when created."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from app.api import db, runtime
from app.api.auth import requires
from app.api.errors import ErrorSchema
from app.api.parsing import Blueprint
from app.api.v1.schemas import LOCATION, Cursor, PageSchema, page_of
from app.domain.roles import Role
from app.services import api_keys

blp = Blueprint("keys", __name__, url_prefix="/api/v1/admin/keys", description="API keys (admin)")


class KeyInSchema(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Regexp(r"^[A-Za-z0-9_.@-]{1,100}$"))
    role = ma.fields.String(required=True, validate=ma.validate.OneOf([r.value for r in Role]))


class KeySchema(ma.Schema):
    id = ma.fields.UUID()
    name = ma.fields.String()
    role = ma.fields.String()
    prefix = ma.fields.String(metadata={"description": "The key's first characters, to tell keys apart"})
    created_at = ma.fields.DateTime()
    last_used_at = ma.fields.DateTime(allow_none=True)
    revoked = ma.fields.Boolean()
    revoked_at = ma.fields.DateTime(allow_none=True)


class KeyListArgsSchema(ma.Schema):
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))
    cursor = Cursor(metadata={"description": "next_cursor of the previous page; none for the first"})
    count = ma.fields.Boolean(load_default=False, metadata={"description": "Also count every key (`total`)"})


class KeyPageSchema(PageSchema):
    items = ma.fields.List(ma.fields.Nested(KeySchema))


class NewKeySchema(KeySchema):
    key = ma.fields.String(metadata={"description": "The key itself: shown this once, never again"})


@blp.route("")
class Keys(MethodView):
    @requires(Role.ADMIN)
    @blp.arguments(KeyListArgsSchema, location="query")
    @blp.response(200, KeyPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List API keys (revoked ones too), newest first, a page at a time"""
        return page_of(api_keys.list_keys(db(), after=args.get("cursor"), limit=args["limit"], count=args["count"]))

    @requires(Role.ADMIN)
    @blp.arguments(KeyInSchema)
    @blp.response(201, NewKeySchema, headers=LOCATION)
    @blp.alt_response(409, schema=ErrorSchema, description="The name is taken")
    def post(self, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Create an API key; the response holds the key, which is not shown again"""
        row, key = api_keys.create_key(db(), body["name"], body["role"])
        made = {**{f: getattr(row, f) for f in KeySchema().fields}, "key": key}
        return made, 201, {"Location": f"/api/v1/admin/keys/{row.id}"}


@blp.route("/<string:id_or_name>")
class KeyByIdOrName(MethodView):
    @requires(Role.ADMIN)
    @blp.response(200, KeySchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def delete(self, id_or_name: str) -> Any:
        """Revoke an API key (by id or name); it stops working at once"""
        return api_keys.revoke_key(db(), runtime().keys, id_or_name)
