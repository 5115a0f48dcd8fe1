"""Every 4xx and 5xx of Stepwise's own routes as RFC 9457 problem details (app/api/problems.py):
werkzeug's and webargs' errors, ours (the StepwiseError tree, mapped here once), a
dependency that is away, and anything unexpected."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import request
from flask_smorest import Api
from flask_smorest.utils import get_appcontext
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError, MethodNotAllowed
from werkzeug.http import quote_etag

from app.api.problems import MEDIA_TYPE, problem
from app.db import unreachable
from app.domain.errors import StepwiseError

log = logging.getLogger(__name__)


class ProblemSchema(ma.Schema):
    field = ma.fields.String(metadata={"description": "What is wrong: a body field, or e.g. query.limit"})
    message = ma.fields.String()
    code = ma.fields.String(metadata={"description": "Machine-readable reason, e.g. cycle, unknown_handler"})
    node_id = ma.fields.String(metadata={"description": "The DAG node at fault, when there is one"})
    details = ma.fields.Dict()


class ErrorSchema(ma.Schema):
    """RFC 9457 problem details, with our `errors` and `details` as extension members."""

    type = ma.fields.String(
        metadata={"description": "The kind of problem: GET it (/problems/<code>) to read what it means"}
    )
    title = ma.fields.String(metadata={"description": "The kind's summary"})
    status = ma.fields.Integer(metadata={"description": "HTTP status code"})
    detail = ma.fields.String(metadata={"description": "What went wrong this time"})
    instance = ma.fields.String(metadata={"description": "The request's path"})
    errors = ma.fields.List(ma.fields.Nested(ProblemSchema), metadata={"description": "Every problem found"})
    details = ma.fields.Dict(metadata={"description": "Context, e.g. current_status on a 409"})


class StepwiseApi(Api):
    """flask-smorest's Api with werkzeug's errors (and webargs' 422s) in our shape."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        """Werkzeug's and webargs' errors, in the error shape (peer-a's on its paths)."""
        from app.api import peer_a

        if request.blueprint is None and peer_a.owns(request.path):
            return peer_a.http_error(error)
        data = getattr(error, "data", None) or {}
        code = error.code or 500
        if code == 304:  # Not Modified: no body, and the tag the client already holds
            etag = get_appcontext().get("etag", {}).get("etag")
            return "", 304, {"ETag": quote_etag(etag)} if etag else {}
        messages = data.get("errors") or data.get("messages")
        detail = data.get("message") or ("the request is not valid" if messages else None)
        headers = dict(data.get("headers") or {})
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)  # RFC 9110: a 405 says what is allowed
        body = problem(code, detail or error.description or HTTPStatus(code).phrase,
                       errors=flatten_messages(messages) if messages else None)  # fmt: skip
        return _answer(body, code, headers)


def flatten_messages(messages: Any) -> list[dict[str, str]]:
    """webargs' nested {location: {field: [messages]}} as a flat list of {field, message, code}."""
    out: list[dict[str, str]] = []

    def walk(value: Any, path: list[str]) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(sub, [*path, str(key)])
        else:
            text = " ".join(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) else str(value)
            out.append({"field": ".".join(path) or "body", "message": text, "code": "invalid"})

    if not isinstance(messages, dict):
        messages = {"json": messages}
    for location, fields in messages.items():
        # The body is the usual place; other locations (query, headers) lead the path.
        walk(fields, [] if location == "json" else [location])
    return out


def engine_error(error: StepwiseError) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Our exceptions, as problem details with their status code and kind."""
    errors = [p.as_dict() for p in error.problems] or None
    body = problem(error.status_code, error.message, error.code, errors, error.details or None)
    return _answer(body, error.status_code, error.headers)


# The root peers' API: peer-c's clients read an error's `detail`, and find every problem in it.
DETAILED_BLUEPRINTS = frozenset({"peer-api"})


def _answer(body: dict[str, Any], status: int, headers: dict[str, str]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A problem as a response: its media type, and on the root peers' paths every problem
    in `detail` too."""
    if request.blueprint in DETAILED_BLUEPRINTS and body.get("errors"):
        problems = [f"{p['node_id']}: {p['message']}" if p.get("node_id") else p["message"] for p in body["errors"]]
        body = {**body, "detail": f"{body['detail']}: {'; '.join(problems)}"}
    return body, status, {**headers, "Content-Type": MEDIA_TYPE}


DEPENDENCY_RETRY_AFTER_SECONDS = 5
# What an unreachable PostgreSQL or Redis (or a pool with no connection to spare) raises.
UNAVAILABLE = (DBAPIError, PoolTimeoutError, RedisConnectionError, RedisTimeoutError)


def unreachable_dependency(error: Exception) -> str | None:
    """ "PostgreSQL" or "Redis" when the error says it could not be reached; None for an
    error PostgreSQL answered (a bug: a 500)."""
    if isinstance(error, DBAPIError) and not unreachable(error):
        return None
    return "Redis" if isinstance(error, RedisError) else "PostgreSQL"


def dependency_error(error: Exception) -> tuple[dict[str, Any], int, dict[str, str]]:
    """PostgreSQL or Redis unreachable: 503 with Retry-After, for the client to try again."""
    which = unreachable_dependency(error)
    if which is None:
        return unexpected_error(error)
    log.warning("%s unreachable on %s %s: %s", which, request.method, request.path, type(error).__name__)
    body = problem(503, f"{which} is unreachable; try again shortly", "unavailable")
    return _answer(body, 503, {"Retry-After": str(DEPENDENCY_RETRY_AFTER_SECONDS)})


def unexpected_error(error: Exception) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Anything else: a 500, logged here with its traceback; the client learns nothing of
    the internals."""
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=error)
    return _answer(problem(500, InternalServerError.description, "internal_error"), 500, {})
