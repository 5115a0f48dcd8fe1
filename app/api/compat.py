"""The root peers' (peer-c's, peer-e's) submit-and-trigger API, so their scripts and
payload files run unchanged. (peer-a's, under /api/v1/workflow, is app/api/peer_a.py.)

POST /workflow stores the DAG as an ad-hoc workflow version with a PENDING execution;
POST /workflow/trigger/{id} starts it (or reruns its failed nodes); GET /workflows/{id}
and /results watch it. As in those peers, `call_external_service` and the LLM handlers of
a workflow submitted here are simulations (app/handlers/peers.py); `http_request` is real.
A thin layer over the services /api/v1 uses: the same validation, state machine and
roles. As the peers do, an invalid DAG or body is a 400, not a 422, and every error
carries peer-c's `detail` beside Stepwise's fields.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import marshmallow as ma
from flask import g
from flask.views import MethodView
from marshmallow import fields, validate

from app import correlation
from app.api import db, limits, runtime
from app.api.auth import keyless, requires
from app.api.errors import ErrorSchema
from app.api.parsing import Blueprint, StrictParser
from app.api.v1.schemas import NodeInSchema, WorkflowBodySchema
from app.domain.errors import InvalidWorkflowError, NotFoundError, StepwiseError
from app.domain.roles import Role, allows
from app.domain.states import ExecutionStatus
from app.handlers.peers import PEER_NAMES
from app.services import executions, lifecycle
from app.services.executions import ExecutionView
from app.services.lifecycle import TriggerOutcome
from app.services.workflows import WorkflowDraft


class _PeerParser(StrictParser):
    DEFAULT_VALIDATION_STATUS = 400


class _PeerBlueprint(Blueprint):
    ARGUMENTS_PARSER = _PeerParser()


blp = _PeerBlueprint(
    "peer-api",
    __name__,
    description="The peer engines' submit-and-trigger API (POST /workflow, then trigger, poll, read results)",
)


class InvalidDagError(StepwiseError):
    """InvalidWorkflowError as the peers answer it: 400."""

    status_code = 400
    code = "invalid_dag"


# What the peers call an execution's status: a RETRYING one is, to them, still running.
PEER_STATUS = {ExecutionStatus.RETRYING: ExecutionStatus.RUNNING}


class DagSchema(ma.Schema):
    nodes = fields.List(fields.Nested(NodeInSchema), required=True)


class SubmitSchema(WorkflowBodySchema):
    name = fields.String(load_default="adhoc", validate=validate.Length(min=1, max=200))
    dag = fields.Nested(DagSchema, metadata={"description": "{nodes: [...]}; or give `nodes` at the top"})
    nodes = fields.List(fields.Nested(NodeInSchema))
    input_data = fields.Dict(keys=fields.String(), load_default=dict, metadata={"description": "The run's input"})

    @ma.validates_schema
    def one_node_list(self, data: dict[str, Any], **_: Any) -> None:
        if ("dag" in data) == ("nodes" in data):
            raise ma.ValidationError("give the nodes as dag.nodes or as nodes, once", "nodes")


class AcceptedSchema(ma.Schema):
    execution_id = fields.UUID()
    workflow_id = fields.UUID()
    status = fields.String()
    message = fields.String()


class TriggerArgsSchema(ma.Schema):
    dry_run = fields.Boolean(
        load_default=None,
        metadata={
            "description": "Start it as a dry run: outbound handlers (http, llm) answer with a synthetic response "
            "instead of calling. Unset: as the execution was made (not a dry run, unless made with dry_run)"
        },
    )


class TriggeredSchema(ma.Schema):
    execution_id = fields.UUID()
    status = fields.String()
    triggered = fields.Boolean(metadata={"description": "False when the call changed nothing"})
    dry_run = fields.Boolean()
    message = fields.String()


class PeerNodeSchema(ma.Schema):
    status = fields.String()
    attempt = fields.Integer()
    error = fields.Dict(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class StatusSchema(ma.Schema):
    execution_id = fields.UUID()
    workflow_id = fields.UUID()
    name = fields.String()
    status = fields.String(metadata={"enum": [str(s) for s in ExecutionStatus if s not in PEER_STATUS]})
    dry_run = fields.Boolean()
    error = fields.Dict(allow_none=True)
    nodes = fields.Dict(keys=fields.String(), values=fields.Nested(PeerNodeSchema))
    progress = fields.Dict()
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class PeerResultsSchema(ma.Schema):
    execution_id = fields.UUID()
    status = fields.String()
    results = fields.Dict(keys=fields.String(), values=fields.Raw())


class CancelledSchema(ma.Schema):
    execution_id = fields.UUID()
    status = fields.String()
    message = fields.String()


def _visible(execution_id: uuid.UUID) -> None:
    """A caller admitted without a key (PEER_KEYLESS_ROLE) sees only the peers' own runs
    (ad-hoc workflows): any other execution is, to it, unknown."""
    if keyless() and not executions.get_execution(db(), execution_id, nodes_limit=0).workflow.adhoc:
        raise NotFoundError(f"execution {execution_id} not found")


def _peer_status(view: ExecutionView) -> str:
    status = ExecutionStatus(view.execution.status)
    return str(PEER_STATUS.get(status, status))


@blp.route("/workflow", endpoint="submit")
class Submit(MethodView):
    @limits.trigger
    @blp.arguments(SubmitSchema)
    @blp.response(200, AcceptedSchema)
    @blp.alt_response(400, schema=ErrorSchema, description="The DAG is not valid: every reason, by node and field")
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Submit a DAG: stored with a PENDING execution, which a trigger starts"""
        nodes = [
            replace(node, handler=PEER_NAMES.get(node.handler, node.handler))
            for node in (body["dag"]["nodes"] if "dag" in body else body["nodes"])
        ]
        draft = WorkflowDraft(
            name=body["name"], description=body["description"], nodes=nodes, timeout_seconds=body["timeout_seconds"]
        )
        request = executions.TriggerRequest(input=body["input_data"], correlation_id=correlation.correlation_id.get())
        try:
            view = executions.submit_adhoc(db(), draft, runtime().limits, request)
        except InvalidWorkflowError as err:
            raise InvalidDagError(err.message, problems=err.problems, details=err.details) from err
        return {
            "execution_id": view.execution.id,
            "workflow_id": view.workflow.id,
            "status": view.execution.status,
            "message": "Workflow accepted",
        }


@blp.route("/workflow/trigger/<uuid:execution_id>", endpoint="trigger")
class Trigger(MethodView):
    @limits.trigger
    @blp.arguments(TriggerArgsSchema, location="query")
    @blp.response(200, TriggeredSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="A rerun asked for another dry_run than the first run had")
    def post(self, args: dict[str, Any], execution_id: uuid.UUID) -> dict[str, Any]:
        """Start a PENDING execution; rerun a FAILED one's failed nodes (admin); leave others alone"""
        _visible(execution_id)
        may_rerun = allows(g.identity.role, Role.ADMIN)
        outcome = lifecycle.start_or_rerun(
            db(),
            runtime().dispatcher,
            execution_id,
            dry_run=args["dry_run"],
            may_rerun=may_rerun,
            admission=runtime().admission,
        )
        view = executions.get_execution(db(), execution_id, nodes_limit=0)
        status = _peer_status(view)
        message = {
            TriggerOutcome.STARTED: "Workflow triggered",
            TriggerOutcome.RERUN: "Workflow triggered: its failed nodes run again",
            TriggerOutcome.UNCHANGED: f"Workflow is already {status}; nothing changed",
        }[outcome]
        return {
            "execution_id": execution_id,
            "status": status,
            "triggered": outcome != TriggerOutcome.UNCHANGED,
            "dry_run": view.execution.dry_run,
            "message": message,
        }


@blp.route("/workflows/<uuid:execution_id>", endpoint="status")
class Status(MethodView):
    @blp.response(200, StatusSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, execution_id: uuid.UUID) -> dict[str, Any]:
        """An execution's status, each node's state and the progress"""
        _visible(execution_id)
        view = executions.get_execution(db(), execution_id, nodes_limit=None)  # the peers' answer lists them all
        execution = view.execution
        return {
            "execution_id": execution.id,
            "workflow_id": view.workflow.id,
            "name": view.workflow.name,
            "status": _peer_status(view),
            "dry_run": execution.dry_run,
            "error": execution.error,
            "nodes": {node.node_id: node for node in view.nodes or []},
            "progress": view.progress,
            "created_at": execution.created_at,
            "started_at": execution.started_at,
            "finished_at": execution.finished_at,
        }

    @requires(Role.ADMIN)
    @blp.response(200, CancelledSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    @blp.alt_response(409, schema=ErrorSchema, description="It has already finished")
    def delete(self, execution_id: uuid.UUID) -> dict[str, Any]:
        """Cancel an execution: final; running nodes are stopped"""
        _visible(execution_id)
        lifecycle.cancel(db(), runtime().dispatcher, execution_id)
        view = executions.get_execution(db(), execution_id, nodes_limit=0)
        return {"execution_id": execution_id, "status": view.execution.status, "message": "Workflow cancelled"}


@blp.route("/workflows/<uuid:execution_id>/results", endpoint="results")
class Results(MethodView):
    @blp.response(200, PeerResultsSchema)
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, execution_id: uuid.UUID) -> dict[str, Any]:
        """The output of each completed node"""
        _visible(execution_id)
        view, results = executions.get_results(db(), execution_id)
        return {"execution_id": execution_id, "status": _peer_status(view), "results": results}
