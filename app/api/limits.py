"""Limits on what a client may send: request rate per key (Flask-Limiter on Redis),
body size (413), content type (415) and charset, a path PostgreSQL can store."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask_limiter import Limiter
from webargs.flaskparser import abort

from app.domain.roles import Role
from app.domain.storable import BAD_TEXT

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
F = TypeVar("F", bound=Callable[..., Any])


def _client() -> str:
    """The rate-limit key: the API key's id, or the address when there is no key."""
    identity = getattr(g, "identity", None)
    if identity is not None and identity.key_id is not None:
        return f"key:{identity.key_id}"
    return f"ip:{request.remote_addr}"


def _role_limit() -> str:
    settings = _settings()
    identity = getattr(g, "identity", None)
    role = identity.role if identity is not None else Role.READER
    return {Role.READER: settings.rate_limit_reader, Role.WRITER: settings.rate_limit_writer}.get(
        role, settings.rate_limit_admin
    )


def trigger_limit() -> str:
    return _settings().rate_limit_trigger


def _settings() -> Any:
    return current_app.extensions["stepwise"].settings


def _exempt_from_role_limit() -> bool:
    """Public routes have no key to count by; triggers count against their own limit."""
    return getattr(g, "identity", None) is None or _is_trigger()


def _is_trigger() -> bool:
    endpoint = request.endpoint
    if endpoint is None:
        return False
    view = current_app.view_functions[endpoint]
    method = getattr(getattr(view, "view_class", None), request.method.lower(), view)
    return bool(getattr(method, "is_trigger", False))


def trigger(view: F) -> F:
    """Mark a view method as a trigger: it counts against RATE_LIMIT_TRIGGER, not its role's.
    (Admission, the refusal while the backlog is long, is the trigger service's.)"""

    @wraps(view)
    def limited(*args: Any, **kwargs: Any) -> Any:
        with current_app.extensions["stepwise_limiter"].limit(trigger_limit, override_defaults=False):
            return view(*args, **kwargs)

    limited.is_trigger = True  # type: ignore[attr-defined]
    return limited  # type: ignore[return-value]


def init_limits(app: Flask) -> None:
    """A limiter of this app's own (its storage is this app's Redis), and the body cap."""
    settings = app.extensions["stepwise"].settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["stepwise_limiter"] = Limiter(
        key_func=_client,
        app=app,
        default_limits=[_role_limit],
        default_limits_exempt_when=_exempt_from_role_limit,
        headers_enabled=True,
        storage_uri=settings.redis_url,
        key_prefix="stepwise-limits",
        # Redis away: serve unlimited rather than fail every request (/ready reports Redis).
        swallow_errors=True,
        # Two counters per key and window, read and bumped in one round trip; a moving
        # window kept a list entry per request and read it back.
        strategy="sliding-window-counter",
    )


def check_content_type() -> None:
    """before_request: a body must be JSON (415 otherwise), in UTF-8 (RFC 8259; 400)."""
    if request.method not in BODY_METHODS:
        return
    has_body = (request.content_length or 0) > 0 or "chunked" in request.headers.get("Transfer-Encoding", "")
    if has_body and not request.is_json:
        abort(415, message=f"send JSON (Content-Type: application/json), not {request.mimetype or 'no type'}")
    charset = request.mimetype_params.get("charset")
    if has_body and charset is not None and charset.lower().replace("-", "") != "utf8":
        abort(400, message=f"JSON is UTF-8 (RFC 8259): send it as such, not as charset={charset}")


def check_path() -> None:
    """before_request: a path (its ids and names) with a NUL or a lone surrogate is a 400
    here, not an error from PostgreSQL, which cannot hold them in text."""
    if BAD_TEXT.search(request.path):
        abort(400, message="the path holds a NUL character or a lone surrogate")
