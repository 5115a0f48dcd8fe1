"""The OpenAPI document's shared parts: how to authenticate, and the errors any
operation can answer with (so clients and schemathesis know them all)."""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
    "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
SPEC_OPTIONS = {
    "security": [{"bearerAuth": []}, {"apiKeyAuth": []}],
    "components": {"securitySchemes": SECURITY_SCHEMES},
    "info": {
        "description": "Stepwise: workflows as DAGs of nodes, run by RQ workers with PostgreSQL as the truth. "
        "Every error has one shape: {code, status, message, errors?, details?}.",
    },
}

_ALWAYS = {
    "400": "The request cannot be read (malformed JSON, a NUL, a bad parameter)",
    "401": "No API key, or not a valid one",
    "403": "The key's role does not allow this",
    "429": "Too many requests for this key; see Retry-After",
}
_WITH_BODY = {
    "413": "The body is larger than MAX_BODY_BYTES",
    "415": "The body is not JSON",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


class CommonErrors(BasePlugin):
    """Adds the errors every operation can return to each one that does not list them."""

    def operation_helper(self, path: str | None = None, operations: dict | None = None, **kwargs: Any) -> None:
        for method, operation in (operations or {}).items():
            responses = operation.setdefault("responses", {})
            extra = dict(_ALWAYS)
            if method in ("post", "put", "patch"):
                extra.update(_WITH_BODY)
            if path and "{" in path:
                extra["404"] = "Not found"
            for code, description in extra.items():
                responses.setdefault(code, _error(description))
