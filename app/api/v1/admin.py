"""/api/v1/admin: dead letters, the nodes that used up their attempts."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from app.api import db, runtime
from app.api.auth import requires
from app.api.errors import ErrorSchema
from app.api.parsing import Blueprint
from app.api.v1.schemas import (
    DeadLetterArgsSchema,
    DeadLetterPageSchema,
    DeadLetterSchema,
    ExecutionDetailSchema,
    page_of,
    page_query,
)
from app.domain.roles import Role
from app.services import dead_letters, executions, lifecycle
from app.services.executions import ExecutionView

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin", description="Operations: dead letters")


@blp.route("/dead-letters")
class DeadLetters(MethodView):
    @requires(Role.ADMIN)
    @blp.arguments(DeadLetterArgsSchema, location="query")
    @blp.response(200, DeadLetterPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List dead letters, newest first, a page at a time"""
        filters = {name: args.get(name) for name in ("workflow_id", "execution_id", "category", "node_id")}
        return page_of(dead_letters.list_dead_letters(db(), **page_query(args, **filters)))


@blp.route("/dead-letters/<uuid:dead_letter_id>")
class DeadLetterById(MethodView):
    @requires(Role.ADMIN)
    @blp.response(200, DeadLetterSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, dead_letter_id: uuid.UUID) -> Any:
        """Get a dead letter, traceback included"""
        return dead_letters.get_dead_letter(db(), dead_letter_id)

    @requires(Role.ADMIN)
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    def delete(self, dead_letter_id: uuid.UUID) -> None:
        """Delete a dead letter (its node stays FAILED)"""
        dead_letters.delete_dead_letter(db(), dead_letter_id)


@blp.route("/dead-letters/<uuid:dead_letter_id>/retry")
class DeadLetterRetry(MethodView):
    @requires(Role.ADMIN)
    @blp.response(200, ExecutionDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="The execution was cancelled, or the node is not FAILED")
    def post(self, dead_letter_id: uuid.UUID) -> ExecutionView:
        """Run the dead-lettered node again; its execution resumes"""
        execution_id = lifecycle.retry_dead_letter(db(), runtime().dispatcher, dead_letter_id)
        return executions.get_execution(db(), execution_id)
