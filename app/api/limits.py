"""Limits on what a client may send: request rate per key (Flask-Limiter on Redis),
body size (413), content type (415)."""

from __future__ import annotations

from flask import Flask, g, request
from flask_limiter import Limiter
from flask_smorest import abort

from app.domain.roles import Role

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


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


def _settings():  # type: ignore[no-untyped-def]
    from flask import current_app

    return current_app.extensions["stepwise"].settings


def _public() -> bool:
    return getattr(g, "identity", None) is None


def init_limits(app: Flask) -> None:
    """A limiter of this app's own (its storage is this app's Redis), and the body cap."""
    settings = app.extensions["stepwise"].settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["stepwise_limiter"] = Limiter(
        key_func=_client,
        app=app,
        default_limits=[_role_limit],
        default_limits_exempt_when=_public,
        headers_enabled=True,
        storage_uri=settings.redis_url,
        key_prefix="stepwise-limits",
        # Redis away: serve unlimited rather than fail every request (/ready reports Redis).
        swallow_errors=True,
        strategy="moving-window",
    )


def check_trigger_limit() -> None:
    """The trigger's own limit, on top of the role's (429 when spent)."""
    from flask import current_app

    with current_app.extensions["stepwise_limiter"].limit(trigger_limit, override_defaults=False):
        pass


def check_content_type() -> None:
    """before_request: a body must be JSON (415 otherwise)."""
    if request.method not in BODY_METHODS:
        return
    has_body = (request.content_length or 0) > 0 or "chunked" in request.headers.get("Transfer-Encoding", "")
    if has_body and not request.is_json:
        abort(415, message=f"send JSON (Content-Type: application/json), not {request.mimetype or 'no type'}")
