"""peer-a's API, exactly (shared/reference/peer-a-contract.md): /api/v1/workflow* and
/api/v1/admin/dlq*, so peer-a's scripts, tests and payload files run unchanged.

Its bodies, status codes, key order and error shapes are peer-a's, not Stepwise's:
`{"error": {message, error_code, context}}` for a domain error, FastAPI's
`{"detail": [...]}` for a body that fails validation, `{"detail": text}` otherwise. A
workflow submitted here runs with peer-a's semantics, fixed at submit: peer-a's handlers
(app/handlers/peer_a.py) and template rules, `condition`, skipped nodes satisfying their
dependents, fail fast, deadlines in fractions of a second. Underneath it is Stepwise's
engine: the same services, state machine, roles and limits as /api/v1.

A plain Flask blueprint, not in the OpenAPI document: that describes Stepwise's own API.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from app import correlation
from app.api import db, limits, runtime
from app.api.auth import requires
from app.api.errors import unexpected_error
from app.api.parsing import loads
from app.domain import dag, peer_a
from app.domain.errors import InvalidWorkflowError, NotFoundError, StepwiseError
from app.domain.roles import Role
from app.domain.states import ExecutionStatus, NodeStatus
from app.domain.storable import UnstorableJsonError
from app.domain.trigger_rules import TriggerRule
from app.handlers import peer_a as peer_a_handlers
from app.handlers import registry
from app.services import dead_letters, executions, lifecycle
from app.services.workflows import WorkflowDraft

blp = Blueprint("peer-a", __name__)
PREFIXES = ("/api/v1/workflow", "/api/v1/admin/dlq")

# What peer-a reports of a node, from Stepwise's finer states: it has no QUEUED or retry
# states (a dispatched node is RUNNING through its retries), and every node a failure or
# a deadline stopped is FAILED.
NODE_STATUS = {
    NodeStatus.QUEUED: "RUNNING",
    NodeStatus.UP_FOR_RETRY: "RUNNING",
    NodeStatus.DEFERRED: "RUNNING",
    NodeStatus.UPSTREAM_FAILED: "FAILED",
}
EXECUTION_STATUS = {ExecutionStatus.RETRYING: "RUNNING"}


class PeerAError(Exception):
    """A domain error as peer-a answers it: {"error": {message, error_code, context}}."""

    def __init__(self, status: int, code: str, message: str, context: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.context = status, code, message, context or {}


class Invalid(Exception):
    """A request that fails validation, as FastAPI answers it: 422 {"detail": [...]}."""

    def __init__(self, loc: list[str | int], msg: str, value: Any, kind: str = "value_error") -> None:
        super().__init__(msg)
        self.detail = [{"type": kind, "loc": loc, "msg": msg, "input": value}]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact, in the order built here (peer-a's clients match `"status":"..."` in the text)."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)
    return Response(text, status, headers, mimetype="application/json")


@blp.errorhandler(PeerAError)
def _domain_error(err: PeerAError) -> Response:
    return _json({"error": {"message": err.message, "error_code": err.code, "context": err.context}}, err.status)


@blp.errorhandler(Invalid)
def _invalid(err: Invalid) -> Response:
    return _json({"detail": err.detail}, 422)


@blp.errorhandler(StepwiseError)
def _engine_error(err: StepwiseError) -> Response:
    """Stepwise's own refusals (a role, admission, a conflict) in peer-a's plain shape."""
    return _json({"detail": err.message}, err.status_code, err.headers)


@blp.errorhandler(HTTPException)
def _http_error(err: HTTPException) -> Response:
    """Werkzeug's and our edge's answers (401, 404, 405, 413, 415, 429, ...) as FastAPI's."""
    code = err.code or 500
    data = getattr(err, "data", None) or {}
    if code == 429:
        retry_after = _retry_after(err)
        message = f"Rate limit exceeded. Retry after {retry_after} seconds."
        return _json({"detail": message}, 429, {"Retry-After": str(retry_after)})
    default = {404: "Not Found", 405: "Method Not Allowed"}.get(code)
    message = data.get("message") or default or err.description or err.name
    headers = {name: value for name, value in err.get_headers() if name.lower() != "content-type"}
    return _json({"detail": message}, code, headers | dict(data.get("headers") or {}))


@blp.errorhandler(Exception)
def _unhandled(err: Exception) -> Response:
    body, status = unexpected_error(err)[:2]  # logged there, with its traceback
    if status != 500:
        return _json({"detail": body["message"]}, status)
    context = {"type": type(err).__name__}
    return _json({"error": {"message": "Internal processing error", "error_code": "INTERNAL_SERVER_ERROR",
                            "context": context}}, 500)  # fmt: skip


def _retry_after(err: HTTPException) -> int:
    try:
        return max(1, math.ceil(float(getattr(err, "retry_after", None) or 1)))
    except (TypeError, ValueError):
        return 1


# The body, read as peer-a does: JSON, absent when there is none.


def _body() -> Any:
    raw = request.get_data(cache=True)
    if not raw:
        return None
    try:
        return loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, UnstorableJsonError) as err:
        raise Invalid(["body"], f"JSON decode error: {err}", None, "json_invalid") from err


def _execution_id(text: str) -> uuid.UUID:
    """An execution id; any other text names no execution (peer-a's 404, not a routing one)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise _not_found(text) from None


def _not_found(execution_id: Any) -> PeerAError:
    context = {"execution_id": str(execution_id)}
    return PeerAError(404, "EXECUTION_NOT_FOUND", f"Execution {execution_id} not found", context)


def _known(view: Callable[..., Any], execution_id: str) -> Any:
    try:
        return view(_execution_id(execution_id))
    except NotFoundError:
        raise _not_found(execution_id) from None


# Submit.


def _submission(body: Any) -> tuple[str, Any, float | None]:
    """(name, nodes, timeout_seconds) of a submit body, or Invalid as FastAPI says it."""
    if not isinstance(body, dict):
        raise Invalid(["body"], "Input should be a valid dictionary", body, "dict_type")
    name = body.get("name")
    if "name" not in body:
        raise Invalid(["body", "name"], "Field required", body, "missing")
    if not isinstance(name, str):
        raise Invalid(["body", "name"], "Input should be a valid string", name, "string_type")
    if not 1 <= len(name) <= 255:
        raise Invalid(["body", "name"], "String should have 1 to 255 characters", name, "string_length")
    if "dag" not in body:
        raise Invalid(["body", "dag"], "Field required", body, "missing")
    graph = body["dag"]
    if not isinstance(graph, dict):
        raise Invalid(["body", "dag"], "Input should be a valid dictionary", graph, "dict_type")
    timeout = body.get("timeout_seconds")
    if timeout is not None:
        try:
            timeout = float(timeout) if not isinstance(timeout, bool) else math.nan
        except (TypeError, ValueError):
            timeout = math.nan
        if not math.isfinite(timeout) or timeout <= 0:
            raise Invalid(["body", "timeout_seconds"], "Input should be greater than 0", body["timeout_seconds"])
    return name, graph.get("nodes"), timeout


def _node_specs(nodes: Any) -> list[dag.NodeSpec]:
    """peer-a's nodes as Stepwise's, checked in peer-a's order; the first problem wins."""
    if not nodes:
        raise PeerAError(400, "EMPTY_WORKFLOW", "Workflow must contain at least one node", {"error": "empty_workflow"})
    if not isinstance(nodes, list):
        raise PeerAError(400, "INVALID_NODE", "dag.nodes must be a list of nodes", {})
    seen: set[str] = set()
    specs = []
    for position, node in enumerate(nodes):
        specs.append(_node_spec(position, node, seen))
    for spec in specs:
        for dependency in spec.dependencies:
            if dependency not in seen:
                raise PeerAError(
                    400,
                    "INVALID_NODE_REFERENCE",
                    f"Node {spec.node_id} references missing dependency {dependency}",
                    {"node_id": spec.node_id, "missing_dependency": dependency},
                )
    _, left = dag.topological_order(specs)
    if left:
        raise PeerAError(
            400, "CYCLIC_DEPENDENCY", f"Workflow contains a cycle among nodes {sorted(left)}", {"cycle_nodes": left}
        )
    return specs


def _node_spec(position: int, node: Any, seen: set[str]) -> dag.NodeSpec:
    if not isinstance(node, dict):
        raise PeerAError(400, "INVALID_NODE", f"Node {position} is not an object", {"index": position})
    node_id, handler = node.get("id"), node.get("handler")
    if not isinstance(node_id, str) or not node_id or not isinstance(handler, str) or not handler:
        raise PeerAError(400, "INVALID_NODE", f"Node {position} needs a string id and handler", {"index": position})
    if node_id in seen:
        raise PeerAError(400, "DUPLICATE_NODE_ID", f"Duplicate node ID: {node_id}", {"node_id": node_id})
    seen.add(node_id)
    if peer_a_handlers.PREFIX + handler not in registry.names():
        # peer-a takes any name and leaves the node hanging at run time; refused here instead.
        known = sorted(n.removeprefix(peer_a_handlers.PREFIX) for n in registry.names() if n.startswith("peer_a."))
        raise PeerAError(
            400,
            "INVALID_NODE",
            f"Node {node_id} has unknown handler {handler!r}; known handlers: {', '.join(known)}",
            {"node_id": node_id, "handler": handler, "known_handlers": known},
        )
    dependencies, config, condition = node.get("dependencies", []), node.get("config", {}), node.get("condition")
    if dependencies is None or not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise PeerAError(400, "INVALID_NODE", f"Node {node_id}: dependencies must be a list of node ids",
                         {"node_id": node_id})  # fmt: skip
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise PeerAError(400, "INVALID_NODE", f"Node {node_id}: config must be an object", {"node_id": node_id})
    text_key = {"call_external_service": "url", "call_llm": "prompt"}.get(handler)
    if text_key in config and not isinstance(config[text_key], str):
        raise PeerAError(
            400, "INVALID_NODE", f"Node {node_id}: config.{text_key} must be a string", {"node_id": node_id}
        )
    if condition is not None and not isinstance(condition, str):
        raise PeerAError(400, "INVALID_NODE", f"Node {node_id}: condition must be a string", {"node_id": node_id})
    return dag.NodeSpec(
        node_id,
        peer_a_handlers.PREFIX + handler,
        tuple(dependencies),
        config,
        # A skipped node satisfies its dependents (peer-a does not propagate skips); a
        # failure ends the execution anyway (fail fast).
        trigger_rule=TriggerRule.NONE_FAILED,
        # peer-a ignores a root's condition: roots always run.
        condition=(condition or None) if dependencies else None,
    )


@blp.post("/api/v1/workflow")
@limits.trigger
def submit() -> Response:
    """Store the DAG with a PENDING execution (201); a trigger starts it."""
    name, nodes, timeout = _submission(_body())
    draft = WorkflowDraft(name=name, nodes=_node_specs(nodes), timeout_seconds=timeout, fail_fast=True)
    request_ = executions.TriggerRequest(correlation_id=correlation.correlation_id.get())
    try:
        view = executions.submit_adhoc(db(), draft, runtime().limits, request_)
    except InvalidWorkflowError as err:  # what peer-a does not limit and Stepwise does (sizes)
        first = err.problems[0] if err.problems else None
        context = {"node_id": first.node_id, "field": first.field} if first and first.node_id else {}
        raise PeerAError(400, "INVALID_WORKFLOW", first.message if first else err.message, context) from err
    body = {
        "workflow_id": str(view.workflow.id),
        "execution_id": str(view.execution.id),
        "message": "Workflow submitted successfully",
    }
    return _json(body, 201)


@blp.post("/api/v1/workflow/trigger/<execution_id>")
@limits.trigger
def trigger(execution_id: str) -> Response:
    """Start a PENDING execution, its `params` readable as {{ params.x }}; leave others alone (200)."""
    body = _body()
    params = {} if body is None else body.get("params", {}) if isinstance(body, dict) else None
    if not isinstance(params, dict):
        raise Invalid(["body", "params"], "Input should be a valid dictionary", params, "dict_type")
    _known(
        lambda found: lifecycle.start_pending(db(), runtime().dispatcher, found, params, runtime().admission),
        execution_id,
    )
    return _json({"execution_id": execution_id, "message": "Workflow execution triggered"})


@blp.get("/api/v1/workflow/<execution_id>")
def status(execution_id: str) -> Response:
    """{execution_id, workflow_id, status, node_statuses: {node id: status}}."""
    view = _known(lambda found: executions.get_execution(db(), found, nodes_limit=None), execution_id)
    state = ExecutionStatus(view.execution.status)
    failed = state == ExecutionStatus.FAILED
    nodes = {}
    for node in view.nodes or []:
        node_status = NodeStatus(node.status)
        shown = "FAILED" if failed and node_status == NodeStatus.CANCELLED else NODE_STATUS.get(node_status)
        nodes[node.node_id] = shown or str(node_status)
    return _json(
        {
            "execution_id": execution_id,
            "workflow_id": str(view.workflow.id),
            "status": EXECUTION_STATUS.get(state, str(state)),
            "node_statuses": nodes,
        }
    )


@blp.get("/api/v1/workflow/<execution_id>/results")
def results(execution_id: str) -> Response:
    """{execution_id, workflow_id, outputs}: each completed node's output, and the trigger's params."""
    view, outputs = _known(lambda found: executions.get_results(db(), found), execution_id)
    if view.execution.input:
        outputs = {**outputs, "params": view.execution.input}
    return _json({"execution_id": execution_id, "workflow_id": str(view.workflow.id), "outputs": outputs})


@blp.delete("/api/v1/workflow/<execution_id>")
@requires(Role.ADMIN)
def cancel(execution_id: str) -> Response:
    """Cancel an unfinished execution; a finished one never changes (409)."""
    found = _execution_id(execution_id)
    try:
        lifecycle.cancel(db(), runtime().dispatcher, found)
    except NotFoundError:
        raise _not_found(execution_id) from None
    except StepwiseError as err:
        if err.status_code != 409:
            raise
        context = {"execution_id": execution_id, **err.details}
        raise PeerAError(409, "INVALID_STATUS_TRANSITION", err.message, context) from err
    return _json({"status": "success", "message": f"Execution {execution_id} cancelled"})


# The dead-letter queue: every dead letter, whatever API its workflow came through.


def _dlq_entry(letter: Any) -> dict[str, Any]:
    when = letter.created_at.isoformat(timespec="microseconds")
    return {
        "id": str(letter.id),
        "task_id": f"{letter.execution_id}:{letter.node_id}",
        "execution_id": str(letter.execution_id),
        "node_id": letter.node_id,
        "handler": letter.handler.removeprefix(peer_a_handlers.PREFIX),
        "error_message": letter.message,
        "retry_count": letter.attempts,
        "original_timestamp": when,
        "failed_at": when,
        "error_detail": {
            "message": letter.message,
            "error_code": "Exception" if letter.error_class == "HandlerError" else letter.error_class,
            "category": peer_a.dlq_category(letter.error_class, letter.message),
            "traceback_hash": hashlib.sha256((letter.traceback or "").encode()).hexdigest()[:12],
            "timestamp": when,
        },
    }


def _entry_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise _no_entry(text) from None


def _no_entry(entry_id: Any) -> HTTPException:
    err = HTTPException(f"DLQ entry {entry_id} not found")
    err.code = 404
    err.data = {"message": f"DLQ entry {entry_id} not found"}  # type: ignore[attr-defined]
    return err


@blp.get("/api/v1/admin/dlq")
@requires(Role.ADMIN)
def dlq() -> Response:
    """{entries: [...], count}: the oldest `limit` dead letters first; count is all of them."""
    raw = request.args.get("limit", "100")
    try:
        limit = int(raw)
    except ValueError:
        raise Invalid(["query", "limit"], "Input should be a valid integer", raw, "int_parsing") from None
    letters, total = dead_letters.list_dead_letters(
        db(), workflow_id=None, execution_id=None, category=None, node_id=None,
        limit=max(limit, 0), offset=0, oldest_first=True,
    )  # fmt: skip
    return _json({"entries": [_dlq_entry(letter) for letter in letters], "count": total})


@blp.post("/api/v1/admin/dlq/<entry_id>/retry")
@requires(Role.ADMIN)
def dlq_retry(entry_id: str) -> Response:
    """Run the node again with fresh attempts; the execution resumes."""
    found = _entry_id(entry_id)
    try:
        letter = dead_letters.get_dead_letter(db(), found)
        lifecycle.retry_dead_letter(db(), runtime().dispatcher, found)
    except NotFoundError:
        raise _no_entry(entry_id) from None
    task = f"{letter.execution_id}:{letter.node_id}"
    return _json({"status": "success", "message": "Task re-submitted to queue", "task_id": task})


@blp.delete("/api/v1/admin/dlq/<entry_id>")
@requires(Role.ADMIN)
def dlq_delete(entry_id: str) -> Response:
    """Discard a dead letter; the execution and its nodes are left as they are."""
    found = _entry_id(entry_id)
    try:
        dead_letters.delete_dead_letter(db(), found)
    except NotFoundError:
        raise _no_entry(entry_id) from None
    return _json({"status": "success", "message": f"DLQ entry {entry_id} deleted"})
