"""The engine's exceptions. The API maps each to one HTTP status in one place.

* StepwiseError
  x ForbiddenError (403): the caller's role does not allow this, as things stand
  x NotFoundError (404)
  x ConflictError (409): the resource is not in a state that allows the request
  x UnprocessableError (422)
    · InvalidWorkflowError: the DAG or a node's config is wrong; carries every problem
    · IdempotencyKeyMismatchError: the key was used before with another body
  x UnavailableError (503): try again later; says when (Retry-After)
    · OverloadedError: more work waits than the engine accepts
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request, pointing at the node and field at fault."""

    field: str
    message: str
    code: str
    node_id: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The problem as JSON, without empty optional fields."""
        data = asdict(self)
        if self.node_id is None:
            del data["node_id"]
        if not self.details:
            del data["details"]
        return data


class StepwiseError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        problems: list[Problem] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []
        self.details = details or {}

    @property
    def headers(self) -> dict[str, str]:
        """Headers the answer carries besides the body."""
        return {}


class ForbiddenError(StepwiseError):
    status_code = 403
    code = "forbidden"


class NotFoundError(StepwiseError):
    status_code = 404
    code = "not_found"


class ConflictError(StepwiseError):
    status_code = 409
    code = "conflict"


class UnprocessableError(StepwiseError):
    status_code = 422
    code = "unprocessable"


class InvalidWorkflowError(UnprocessableError):
    code = "invalid_workflow"


class IdempotencyKeyMismatchError(UnprocessableError):
    code = "idempotency_key_reused"


class UnavailableError(StepwiseError):
    status_code = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class OverloadedError(UnavailableError):
    code = "overloaded"
