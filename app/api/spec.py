"""The OpenAPI document's shared parts: how to authenticate, and the errors any
operation can answer with (so clients and schemathesis know them all)."""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin

from app.api.problems import MEDIA_TYPE as PROBLEM

SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <API key>"},
    "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
SPEC_OPTIONS = {
    "security": [{"bearerAuth": []}, {"apiKeyAuth": []}],
    "components": {"securitySchemes": SECURITY_SCHEMES},
    "info": {
        "description": "Stepwise: workflows as DAGs of nodes, run by RQ workers with PostgreSQL as the truth. "
        "Every error is RFC 9457 problem details (application/problem+json): {type, title, status, detail, "
        "instance, errors?, details?}; GET /problems lists the types.",
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
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


class CommonErrors(BasePlugin):
    """Adds the errors every operation can return to each one that does not list them."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for method, operation in (operations or {}).items():
            responses = operation.setdefault("responses", {})
            extra = dict(_ALWAYS)
            if method in ("post", "put", "patch"):
                extra.update(_WITH_BODY)
            if path and "{" in path:
                extra["404"] = "Not found"
            for code, description in extra.items():
                responses.setdefault(code, _error(description))
            for code, response in responses.items():
                if str(code)[0] in "45" and isinstance(response, dict):
                    _as_problem(response)

    def response_helper(self, response: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The shared error responses (flask-smorest's DEFAULT_ERROR, ...) too."""
        if "Error" in str(response.get("content", {})):
            _as_problem(response)
        return response


def _as_problem(response: dict[str, Any]) -> None:
    """Errors are problem details, whichever view documented them."""
    content = response.get("content")
    if content and "application/json" in content:
        content[PROBLEM] = content.pop("application/json")
