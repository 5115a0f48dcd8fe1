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
import time
import uuid
from collections.abc import Callable
from datetime import UTC
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException

from app import correlation
from app.api import db, limits, peer_a_dag, runtime
from app.api.auth import keyless, requires
from app.api.errors import DEPENDENCY_RETRY_AFTER_SECONDS, UNAVAILABLE, unexpected_error, unreachable_dependency
from app.api.parsing import loads
from app.api.peer_a_dag import PeerAError, PeerAValidationError
from app.domain import peer_a
from app.domain.errors import InvalidWorkflowError, NotFoundError, StepwiseError
from app.domain.roles import Role
from app.domain.states import ExecutionStatus, NodeStatus
from app.domain.storable import UnstorableJsonError
from app.handlers import peer_a as peer_a_handlers
from app.services import dead_letters, executions, lifecycle
from app.services.workflows import WorkflowDraft

blp = Blueprint("peer-a", __name__)


def owns(path: str) -> bool:
    """Whether a path is peer-a's: an answer there that no view of it gives (an unknown
    sub-path, a method it does not take) is in its shape too (app/api/errors.py asks)."""
    return path == "/api/v1/workflow" or path.startswith(("/api/v1/workflow/", "/api/v1/admin/dlq"))


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


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact, in the order built here (peer-a's clients match `"status":"..."` in the text)."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)
    return Response(text, status, headers, mimetype="application/json")


@blp.errorhandler(PeerAError)
def _domain_error(err: PeerAError) -> Response:
    return _json({"error": {"message": err.message, "error_code": err.code, "context": err.context}}, err.status)


@blp.errorhandler(PeerAValidationError)
def _invalid(err: PeerAValidationError) -> Response:
    return _json({"detail": err.detail}, 422)


@blp.errorhandler(StepwiseError)
def _engine_error(err: StepwiseError) -> Response:
    """Stepwise's own refusals (a role, admission, a conflict) in peer-a's plain shape."""
    return _json({"detail": err.message}, err.status_code, err.headers)


@blp.errorhandler(HTTPException)
def http_error(err: HTTPException) -> Response:
    """Werkzeug's and our edge's answers (401, 404, 405, 413, 415, 429, ...) as FastAPI's."""
    code = err.code or 500
    data = getattr(err, "data", None) or {}
    if code == 429:
        retry_after = _retry_after()
        message = f"Rate limit exceeded. Retry after {retry_after} seconds."
        return _json({"detail": message}, 429, {"Retry-After": str(retry_after)})
    default = {404: "Not Found", 405: "Method Not Allowed"}.get(code)
    message = data.get("message") or default or err.description or err.name
    headers = {name: value for name, value in err.get_headers() if name.lower() != "content-type"}
    return _json({"detail": message}, code, headers | dict(data.get("headers") or {}))


@blp.errorhandler(Exception)
def _unhandled(err: Exception) -> Response:
    """A dependency away is a 503 with Retry-After, as on every path; anything else
    peer-a's 500."""
    which = unreachable_dependency(err) if isinstance(err, UNAVAILABLE) else None
    if which is not None:
        retry = {"Retry-After": str(DEPENDENCY_RETRY_AFTER_SECONDS)}
        return _json({"detail": f"{which} is unreachable; try again shortly"}, 503, retry)
    unexpected_error(err)  # logged there, with its traceback
    context = {"type": type(err).__name__}
    return _json({"error": {"message": "Internal processing error", "error_code": "INTERNAL_SERVER_ERROR",
                            "context": context}}, 500)  # fmt: skip


def _retry_after() -> int:
    """Seconds to the end of the caller's rate-limit window (at least 1)."""
    current = current_app.extensions["stepwise_limiter"].current_limit
    try:
        return max(1, math.ceil(current.reset_at - time.time())) if current is not None else 1
    except Exception:  # Redis away: the limiter let the request through anyway
        return 1


# The body, read as peer-a does: JSON, absent when there is none.


def _body() -> Any:
    raw = request.get_data(cache=True)
    if not raw:
        return None
    try:
        return loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, UnstorableJsonError) as err:
        raise PeerAValidationError(["body"], f"JSON decode error: {err}", None, "json_invalid") from err


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


def _visible(execution_id: str) -> uuid.UUID:
    """The execution, if this caller may see it: a caller admitted without a key sees only
    the peers' own runs (ad-hoc workflows); peer-a's 404 otherwise."""
    found = _execution_id(execution_id)
    if keyless():
        view = _known(lambda known: executions.get_execution(db(), known, nodes_limit=0), execution_id)
        if not view.workflow.adhoc:
            raise _not_found(execution_id)
    return found


# The routes.


@blp.post("/api/v1/workflow")
@limits.trigger
def submit() -> Response:
    """Store the DAG with a PENDING execution (201); a trigger starts it."""
    name, nodes, timeout = peer_a_dag.submission(_body())
    draft = WorkflowDraft(name=name, nodes=peer_a_dag.node_specs(nodes), timeout_seconds=timeout, fail_fast=True)
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
        raise PeerAValidationError(["body", "params"], "Input should be a valid dictionary", params, "dict_type")
    found = _visible(execution_id)
    _known(lambda _: lifecycle.start_pending(db(), runtime().dispatcher, found, params, runtime().admission),
           execution_id)  # fmt: skip
    return _json({"execution_id": execution_id, "message": "Workflow execution triggered"})


@blp.get("/api/v1/workflow/<execution_id>")
def status(execution_id: str) -> Response:
    """{execution_id, workflow_id, status, node_statuses: {node id: status}}."""
    found = _visible(execution_id)
    view = _known(lambda _: executions.get_execution(db(), found, nodes_limit=None), execution_id)
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
    found = _visible(execution_id)
    view, outputs = _known(lambda _: executions.get_results(db(), found), execution_id)
    if view.execution.input:
        outputs = {**outputs, "params": view.execution.input}
    return _json({"execution_id": execution_id, "workflow_id": str(view.workflow.id), "outputs": outputs})


@blp.delete("/api/v1/workflow/<execution_id>")
@requires(Role.ADMIN)
def cancel(execution_id: str) -> Response:
    """Cancel an unfinished execution; a finished one never changes (409)."""
    found = _visible(execution_id)
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
    when = letter.created_at.astimezone(UTC).isoformat(timespec="microseconds")
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
    """A dead letter's id, if this caller may see it (see _visible)."""
    try:
        found = uuid.UUID(text)
    except ValueError:
        raise _no_entry(text) from None
    if keyless():
        try:
            letter = dead_letters.get_dead_letter(db(), found)
        except NotFoundError:
            raise _no_entry(text) from None
        _visible(str(letter.execution_id))
    return found


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
        raise PeerAValidationError(["query", "limit"], "Input should be a valid integer", raw, "int_parsing") from None
    letters, total = dead_letters.oldest_dead_letters(db(), max(limit, 0), adhoc_only=keyless())
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
