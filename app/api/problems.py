"""The errors Stepwise answers, as RFC 9457 problem details (application/problem+json).

Every error on Stepwise's own routes is one object: `type` (a URI naming the kind of
problem, stable, documented at GET /problems/<code>), `title` (that kind's summary),
`status`, `detail` (what went wrong this time), `instance` (the request's path), and, as
extension members, `errors` (every problem found: field, message, code, node_id) and
`details` (context, e.g. current_status on a 409). peer-a's paths answer in peer-a's
shapes instead (app/api/peer_a.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request
from webargs.flaskparser import abort

MEDIA_TYPE = "application/problem+json"
BASE = "/problems/"


@dataclass(frozen=True)
class ProblemType:
    code: str
    status: int
    title: str
    description: str

    @property
    def uri(self) -> str:
        return BASE + self.code


TYPES = {
    t.code: t
    for t in (
        ProblemType("bad_request", 400, "The request cannot be read",
                    "Malformed JSON (with its line and column), a body that is not UTF-8, a NUL or a lone "
                    "surrogate, a value PostgreSQL cannot store, a bad parameter."),
        ProblemType("invalid_dag", 400, "The workflow is not valid",
                    "The peers' submit (POST /workflow): every problem is in `errors`, by node and field."),
        ProblemType("unauthorized", 401, "An API key is needed",
                    "No key, or one that is unknown or revoked. Send Authorization: Bearer <key> or X-API-Key."),
        ProblemType("forbidden", 403, "The key's role does not allow this",
                    "`detail` names the role needed."),
        ProblemType("not_found", 404, "Not found", "No such resource (or route)."),
        ProblemType("method_not_allowed", 405, "Method not allowed", "The `Allow` header lists the methods."),
        ProblemType("conflict", 409, "The resource's state does not allow this",
                    "`details.current_status` says the state it is in."),
        ProblemType("precondition_failed", 412, "The precondition failed", "An If-Match that no longer matches."),
        ProblemType("payload_too_large", 413, "The body is too large", "Over MAX_BODY_BYTES."),
        ProblemType("uri_too_long", 414, "The request line is too long", "Refused before it reached Stepwise."),
        ProblemType("unsupported_media_type", 415, "The body is not JSON", "Send Content-Type: application/json."),
        ProblemType("validation_failed", 422, "The request is not valid",
                    "A field fails its rules; every problem is in `errors`, by field."),
        ProblemType("invalid_workflow", 422, "The workflow is not valid",
                    "Every problem of the DAG (cycles, unknown handlers or dependencies, templates, configs) "
                    "is in `errors`, by node and field."),
        ProblemType("unprocessable", 422, "The request cannot be carried out as given",
                    "E.g. node_params that do not fit the workflow; see `errors`."),
        ProblemType("idempotency_key_reused", 422, "The idempotency key was used with another body",
                    "The IETF Idempotency-Key draft: the same key with the same body is answered with what the "
                    "first made; with another body, refused. `details.execution_id` names the first."),
        ProblemType("rate_limited", 429, "Too many requests",
                    "Over this key's rate limit; Retry-After says when to try again."),
        ProblemType("header_fields_too_large", 431, "The headers are too large",
                    "Refused before they reached Stepwise."),
        ProblemType("internal_error", 500, "Internal error", "A bug: logged with its traceback; nothing more is told."),
        ProblemType("unavailable", 503, "A dependency is unavailable",
                    "PostgreSQL or Redis could not be reached; Retry-After says when to try again."),
        ProblemType("overloaded", 503, "The engine is overloaded",
                    "More nodes wait for a worker than MAX_QUEUED_NODES; Retry-After says when to try again. "
                    "A replay of a known idempotency key is still answered."),
    )
}  # fmt: skip
# An HTTP status answered without one of ours (werkzeug's, the limiter's): its kind.
BY_STATUS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 412: "precondition_failed", 413: "payload_too_large", 414: "uri_too_long",
    415: "unsupported_media_type", 422: "validation_failed", 429: "rate_limited", 431: "header_fields_too_large",
    500: "internal_error", 503: "unavailable",
}  # fmt: skip


def problem(
    status: int,
    detail: str,
    code: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A problem details object for this request; its type from `code` (or the status)."""
    kind = TYPES.get(code or BY_STATUS.get(status, ""))
    body: dict[str, Any] = {
        "type": kind.uri if kind else "about:blank",
        "title": kind.title if kind else detail,
        "status": status,
        "detail": detail,
        "instance": request.path,
    }
    if errors:
        body["errors"] = errors
    if details:
        body["details"] = details
    return body


blp = Blueprint("problems", __name__)


@blp.get("/problems")
def problem_types() -> Response:
    """Every kind of problem Stepwise answers with."""
    return jsonify([_described(t) for t in TYPES.values()])


@blp.get("/problems/<code>")
def problem_type(code: str) -> Response:
    """What a problem's `type` means."""
    kind = TYPES.get(code)
    if kind is None:
        abort(404, message=f"no problem type {code!r}; GET /problems lists them")
    return jsonify(_described(kind))


def _described(kind: ProblemType) -> dict[str, Any]:
    return {"type": kind.uri, "code": kind.code, "status": kind.status, "title": kind.title,
            "description": kind.description}  # fmt: skip
