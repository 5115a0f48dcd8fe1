"""Who may call what: API keys (Authorization: Bearer, or X-API-Key) and roles.

A view says the role it needs with @requires; otherwise reading (GET) needs a
reader and anything else a writer. Missing or bad key: 401 with WWW-Authenticate;
a key whose role is too low: 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request
from webargs.flaskparser import abort

from app.domain.roles import Role, allows
from app.services.api_keys import Identity

F = TypeVar("F", bound=Callable[..., Any])

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Open to all: liveness, readiness and the API's own description.
PUBLIC_ENDPOINTS = frozenset(
    {
        "ops.health", "ops.ready", "api-docs.openapi_json", "api-docs.openapi_swagger_ui", "static",
        "problems.problem_types", "problems.problem_type",
    }
)  # fmt: skip
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="stepwise"'}
LOCAL = Identity(None, "auth-disabled", Role.ADMIN)
# The peers' paths (their blueprints), where PEER_KEYLESS_ROLE may admit callers without a key.
PEER_BLUEPRINTS = frozenset({"peer-api", "peer-a"})
KEYLESS = "keyless-peer"  # the name of a caller admitted without a key


def requires(role: Role) -> Callable[[F], F]:
    """Mark a view method as needing `role` (or above)."""

    def mark(view: F) -> F:
        view.required_role = role  # type: ignore[attr-defined]
        return view

    return mark


def required_role() -> Role | None:
    """The role the current request needs; None for a public one."""
    endpoint = request.endpoint
    if endpoint is None or endpoint in PUBLIC_ENDPOINTS:
        return None  # no route (404/405 follow), or open to all
    if endpoint == "ops.metrics":
        return Role.READER if current_app.extensions["stepwise"].settings.metrics_require_key else None
    view = current_app.view_functions[endpoint]
    method = getattr(getattr(view, "view_class", None), request.method.lower(), view)
    declared = getattr(method, "required_role", None)
    if declared is not None:
        return declared
    return Role.READER if request.method in READ_METHODS else Role.WRITER


def keyless() -> bool:
    """Whether the caller was admitted without a key (PEER_KEYLESS_ROLE): it sees only the
    peers' own runs (ad-hoc workflows), not every execution of the deployment."""
    identity = g.get("identity")
    return identity is not None and identity.key_id is None and identity.name == KEYLESS


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key") or None


def authenticate() -> None:
    """before_request: set g.identity, or answer 401/403."""
    from app.api import db

    role = required_role()
    if role is None:
        g.identity = None
        return
    settings = current_app.extensions["stepwise"].settings
    if settings.auth_disabled:
        g.identity = LOCAL
        return
    key = presented_key()
    if key is None and request.blueprint in PEER_BLUEPRINTS and settings.peer_keyless_role:
        identity = Identity(None, KEYLESS, Role(settings.peer_keyless_role))
    elif key is None:
        abort(401, message="an API key is required: Authorization: Bearer <key>, or X-API-Key", headers=CHALLENGE)
    else:
        identity = current_app.extensions["stepwise"].keys.authenticate(db(), key)
    if identity is None:
        abort(401, message="the API key is not valid (unknown or revoked)", headers=CHALLENGE)
    g.identity = identity
    if not allows(identity.role, role):
        abort(403, message=f"this needs the {role} role; the key {identity.name!r} is a {identity.role}")
