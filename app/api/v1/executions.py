"""/api/v1/executions: trigger (idempotently), watch, and read results."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView
from webargs.flaskparser import abort

from app import correlation
from app.api import db, limits, runtime
from app.api.auth import requires
from app.api.errors import ErrorSchema
from app.api.parsing import Blueprint
from app.api.v1.schemas import (
    LOCATION,
    ExecutionDetailArgsSchema,
    ExecutionDetailSchema,
    ExecutionListArgsSchema,
    ExecutionPageSchema,
    ExecutionSchema,
    IdempotencyHeaderSchema,
    LogArgsSchema,
    LogPageSchema,
    NodePageArgsSchema,
    NodePageSchema,
    ResultsSchema,
    TriggerSchema,
    page_of,
    page_query,
)
from app.domain.roles import Role
from app.domain.states import NodeStatus
from app.services import executions as service
from app.services import lifecycle

blp = Blueprint("executions", __name__, url_prefix="/api/v1/executions", description="Workflow executions")


@blp.route("")
class Executions(MethodView):
    @blp.arguments(ExecutionListArgsSchema, location="query")
    @blp.response(200, ExecutionPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List executions, newest first, a page at a time"""
        named = ("workflow_id", "workflow_name", "idempotency_key", "correlation_id")
        filters = {name: args.get(name) for name in named}
        return page_of(service.list_executions(db(), **page_query(args, statuses=args["status"], **filters)))

    @limits.trigger
    @blp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
    @blp.arguments(TriggerSchema)
    @blp.response(201, ExecutionSchema, description="A new execution", headers=LOCATION)
    @blp.alt_response(
        200,
        schema=ExecutionSchema,
        description="The execution this idempotency key already made",
        headers={"Content-Location": {**LOCATION["Location"], "description": "The execution's path"}},
    )
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="The workflow is not active, or the key's run was cancelled")
    @blp.alt_response(422, schema=ErrorSchema, description="The key was used with another body, or bad node_params")
    def post(self, body: dict[str, Any], **headers: Any) -> tuple[service.ExecutionView, int, dict[str, str]]:
        """Trigger an execution; repeat it safely with an Idempotency-Key"""
        key = body.get("idempotency_key")
        header_key = headers.get("idempotency_key")
        if key and header_key and key != header_key:
            abort(422, message="the Idempotency-Key header and the idempotency_key field differ")
        request = service.TriggerRequest(
            workflow_id=body.get("workflow_id"),
            workflow_name=body.get("workflow_name"),
            input=body["input_data"],
            idempotency_key=key or header_key,
            correlation_id=correlation.correlation_id.get(),
            scheduled_at=body["scheduled_at"],
            max_retries=body["max_retries"],
            dry_run=body["dry_run"],
            node_params=body["node_params"],
        )
        view = service.trigger(db(), runtime().dispatcher, request, runtime().admission, runtime().limits)
        where = f"/api/v1/executions/{view.execution.id}"
        return (view, 201, {"Location": where}) if view.created else (view, 200, {"Content-Location": where})


@blp.route("/<uuid:execution_id>")
class ExecutionById(MethodView):
    @blp.etag
    @blp.arguments(ExecutionDetailArgsSchema, location="query")
    @blp.response(200, ExecutionDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, args: dict[str, Any], execution_id: uuid.UUID) -> service.ExecutionView:
        """Get an execution: its state, node counts by status, and a page of its nodes"""
        return service.get_execution(
            db(),
            execution_id,
            node_statuses=[NodeStatus(s) for s in args["node_status"]],
            nodes_after=int(args.get("nodes_cursor", -1)),
            nodes_limit=args["nodes_limit"],
        )


@blp.route("/<uuid:execution_id>/nodes")
class ExecutionNodes(MethodView):
    @blp.etag
    @blp.arguments(NodePageArgsSchema, location="query")
    @blp.response(200, NodePageSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, args: dict[str, Any], execution_id: uuid.UUID) -> dict[str, Any]:
        """A page of an execution's nodes, in the workflow's order, filtered by status"""
        view = service.get_execution(
            db(),
            execution_id,
            node_statuses=[NodeStatus(s) for s in args["status"]],
            nodes_after=int(args.get("cursor", -1)),
            nodes_limit=args["limit"],
        )
        next_cursor = None if view.nodes_next is None else str(view.nodes_next)
        return {"items": view.nodes, "next_cursor": next_cursor}


@blp.route("/<uuid:execution_id>/results")
class ExecutionResults(MethodView):
    @blp.response(200, ResultsSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, execution_id: uuid.UUID) -> dict[str, Any]:
        """Get the output of each completed node"""
        view, outputs = service.get_results(db(), execution_id)
        return {"view": view, "results": outputs}


@blp.route("/<uuid:execution_id>/cancel")
class ExecutionCancel(MethodView):
    @requires(Role.ADMIN)
    @blp.response(200, ExecutionDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Already finished; details.current_status says how")
    def post(self, execution_id: uuid.UUID) -> service.ExecutionView:
        """Cancel an execution: pending nodes are cancelled, running ones stopped; final"""
        lifecycle.cancel(db(), runtime().dispatcher, execution_id)
        return service.get_execution(db(), execution_id)


@blp.route("/<uuid:execution_id>/retry")
class ExecutionRetry(MethodView):
    @requires(Role.ADMIN)
    @blp.response(200, ExecutionDetailSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="Not FAILED; details.current_status says what it is")
    def post(self, execution_id: uuid.UUID) -> service.ExecutionView:
        """Retry a failed execution: only its failed nodes run again"""
        lifecycle.retry(db(), runtime().dispatcher, execution_id)
        return service.get_execution(db(), execution_id)


@blp.route("/<uuid:execution_id>/logs")
class ExecutionLogs(MethodView):
    @blp.arguments(LogArgsSchema, location="query")
    @blp.response(200, LogPageSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, args: dict[str, Any], execution_id: uuid.UUID) -> dict[str, Any]:
        """The execution's audit log, oldest first: transitions, attempts, retries, handler lines"""
        rows = service.get_logs(
            db(),
            execution_id,
            min_level=args["level"],
            node_id=args.get("node_id"),
            since=args.get("since"),
            after_id=int(args["cursor"]) if "cursor" in args else None,
            limit=args["limit"],
        )
        next_cursor = str(rows[-1].id) if len(rows) == args["limit"] else None
        return {"items": rows, "next_cursor": next_cursor}
