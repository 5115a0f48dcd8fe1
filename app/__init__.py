"""Stepwise: a workflow engine. `create_app()` builds the Flask API."""

from __future__ import annotations

import logging

from flask import Flask

from app import logs
from app.config import Settings
from app.domain.roles import Role
from app.handlers import load_extensions
from app.runtime import Runtime


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API app; settings from the environment unless given."""
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)
    if settings.auth_disabled:
        logging.getLogger("stepwise").warning(
            "AUTH_DISABLED is set: every caller is an admin, without a key. For local experiments only."
        )
    if settings.peer_keyless_role:
        Role(settings.peer_keyless_role)  # a ValueError naming it, at start rather than per request
        logging.getLogger("stepwise").warning(
            "PEER_KEYLESS_ROLE=%s: callers without a key get the %s role on the peers' paths "
            "(/workflow, /workflows/..., /api/v1/workflow..., /api/v1/admin/dlq...).",
            settings.peer_keyless_role,
            settings.peer_keyless_role,
        )
    load_extensions(settings.handler_module_names)
    app = Flask(__name__)
    # Keys in the order each response builds them (peer-a's clients match the text), and
    # non-ASCII text as itself.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.config.update(
        API_TITLE="Stepwise",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="api/v1/openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist/",
    )
    app.extensions["stepwise"] = Runtime.from_settings(settings)

    from app.api import init_api
    from app.cli import register_commands

    init_api(app)
    register_commands(app)
    return app
