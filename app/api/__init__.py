"""The HTTP API: flask-smorest blueprints under /api/v1, and the edge every request
passes: its correlation id, its key and role, its limits, its metrics and log line."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, current_app, g, request
from sqlalchemy.orm import Session

from app import correlation, metrics
from app.api import auth, limits
from app.api.errors import UNAVAILABLE, StepwiseApi, dependency_error, engine_error, unexpected_error
from app.api.spec import SPEC_OPTIONS, CommonErrors
from app.domain.errors import StepwiseError
from app.runtime import Runtime

log = logging.getLogger("stepwise.http")


def runtime() -> Runtime:
    """This app's connections to PostgreSQL and Redis."""
    return current_app.extensions["stepwise"]


def db() -> Session:
    """The request's session, closed when the request ends. Services own its transactions."""
    if "db" not in g:
        g.db = runtime().sessions()
    return g.db


def _begin() -> None:
    g.started = time.perf_counter()
    g.correlation_id = correlation.accept(request.headers.get("X-Correlation-ID"))
    g.correlation_token = correlation.correlation_id.set(g.correlation_id)


def _finish(response: Response) -> Response:
    response.headers["X-Correlation-ID"] = g.get("correlation_id") or correlation.accept(None)
    route = request.url_rule.rule if request.url_rule else "unmatched"
    elapsed = time.perf_counter() - g.get("started", time.perf_counter())
    method = metrics.method_label(request.method)
    metrics.HTTP_REQUESTS.labels(route, method, str(response.status_code)).inc()
    metrics.HTTP_LATENCY.labels(route, method).observe(elapsed)
    identity = g.get("identity")
    log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "route": route,
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 1),
            "key": identity.name if identity else None,
        },
    )
    return response


def _end(_exc: BaseException | None) -> None:
    token = g.pop("correlation_token", None)
    if token is not None:
        correlation.correlation_id.reset(token)
    session = g.pop("db", None)
    if session is not None:
        session.close()


def init_api(app: Flask) -> StepwiseApi:
    """Register the blueprints, the error handlers and the edge hooks, in order."""
    from app.api import compat, ops, peer_a, problems
    from app.api.v1 import admin, executions, handlers, keys, workflows

    app.config["API_SPEC_OPTIONS"] = SPEC_OPTIONS
    api = StepwiseApi(app, spec_kwargs={"extra_plugins": [CommonErrors()]})
    for blueprint in (workflows.blp, executions.blp, admin.blp, keys.blp, handlers.blp, compat.blp):
        api.register_blueprint(blueprint)
    app.register_blueprint(ops.blp)
    app.register_blueprint(peer_a.blp)
    app.register_blueprint(problems.blp)
    app.register_error_handler(StepwiseError, engine_error)
    for unavailable in UNAVAILABLE:
        app.register_error_handler(unavailable, dependency_error)
    app.register_error_handler(Exception, unexpected_error)
    # Order matters: the correlation id first (every answer carries it), then who is
    # calling, then what they send; the rate limiter (registered last) keys on the caller.
    app.before_request(_begin)
    app.before_request(limits.check_path)
    app.before_request(auth.authenticate)
    app.before_request(limits.check_content_type)
    limits.init_limits(app)
    app.after_request(_finish)
    app.teardown_request(_end)
    return api
