"""/api/v1/workflows: define, version, edit drafts, activate and archive workflows."""

from __future__ import annotations

import uuid
from typing import Any

from flask.views import MethodView

from app.api import db, runtime
from app.api.errors import ErrorSchema
from app.api.parsing import Blueprint
from app.api.v1.schemas import (
    LOCATION,
    NodeInSchema,
    WorkflowInSchema,
    WorkflowListArgsSchema,
    WorkflowNodeSchema,
    WorkflowPageSchema,
    WorkflowSchema,
    page_of,
    page_query,
)
from app.domain.dag import NodeSpec
from app.services import workflows as service

blp = Blueprint(
    "workflows", __name__, url_prefix="/api/v1/workflows", description="Workflow definitions (versioned DAGs)"
)


@blp.route("")
class Workflows(MethodView):
    @blp.arguments(WorkflowListArgsSchema, location="query")
    @blp.response(200, WorkflowPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """List workflows, newest first, a page at a time"""
        return page_of(service.list_workflows(db(), **page_query(args, statuses=args["status"], name=args.get("name"))))

    @blp.arguments(WorkflowInSchema)
    @blp.response(201, WorkflowSchema, headers=LOCATION)
    @blp.alt_response(422, schema=ErrorSchema, description="The DAG or a node's config is not valid")
    def post(self, body: dict[str, Any]) -> tuple[service.WorkflowDetail, int, dict[str, str]]:
        """Define a workflow: a new version if the name exists; a draft unless `activate` is set"""
        draft = service.WorkflowDraft(
            name=body["name"],
            description=body["description"],
            metadata=body["metadata"],
            nodes=body["nodes"],
            activate=body["activate"],
            timeout_seconds=body["timeout_seconds"],
            fail_fast=body["fail_fast"],
        )
        made = service.create_workflow(db(), draft, runtime().limits)
        return made, 201, {"Location": f"/api/v1/workflows/{made.workflow.id}"}


@blp.route("/<uuid:workflow_id>")
class WorkflowById(MethodView):
    @blp.etag
    @blp.response(200, WorkflowSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, workflow_id: uuid.UUID) -> service.WorkflowDetail:
        """Get a workflow with its nodes (strong ETag: an active version never changes; If-None-Match: 304)"""
        return service.get_workflow(db(), workflow_id)


@blp.route("/<uuid:workflow_id>/steps")
class WorkflowSteps(MethodView):
    @blp.arguments(NodeInSchema)
    @blp.response(201, WorkflowNodeSchema, headers=LOCATION)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="The workflow is not a draft")
    @blp.alt_response(422, schema=ErrorSchema, description="The step is not valid")
    def post(self, step: NodeSpec, workflow_id: uuid.UUID) -> Any:
        """Add a node to a draft workflow (Location: the workflow, which holds its nodes)"""
        node = service.add_step(db(), workflow_id, step, runtime().limits)
        return node, 201, {"Location": f"/api/v1/workflows/{workflow_id}"}


@blp.route("/<uuid:workflow_id>/activate")
class WorkflowActivate(MethodView):
    @blp.response(200, WorkflowSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="The workflow is archived")
    @blp.alt_response(422, schema=ErrorSchema, description="The DAG is not valid")
    def post(self, workflow_id: uuid.UUID) -> service.WorkflowDetail:
        """Validate a draft and freeze it, so it can run"""
        return service.activate(db(), workflow_id, runtime().limits)


@blp.route("/<uuid:workflow_id>/archive")
class WorkflowArchive(MethodView):
    @blp.response(200, WorkflowSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def post(self, workflow_id: uuid.UUID) -> service.WorkflowDetail:
        """Archive a workflow: no new executions; running ones finish"""
        return service.archive(db(), workflow_id)
