"""The work at hand (correlation id, execution, node), for log lines and audit rows.

Set at the edge (an HTTP request, an RQ job) and read wherever a line or a row is
written, so a request can be traced through the API, the queue and the workers.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
execution_id: ContextVar[str | None] = ContextVar("execution_id", default=None)
node_id: ContextVar[str | None] = ContextVar("node_id", default=None)

# What a client may send: visible ASCII, bounded; anything else is replaced, not trusted.
_VALID = re.compile(r"^[\x21-\x7e]{1,200}$")


def accept(value: str | None) -> str:
    """The client's correlation id if it is sane, else a new one."""
    return value if value and _VALID.match(value) else uuid.uuid4().hex


@contextmanager
def bound(correlation: str | None = None, execution: object = None, node: str | None = None) -> Iterator[None]:
    """Set the given parts of the context for the block; unset ones stay as they are."""
    tokens = []
    if correlation is not None:
        tokens.append((correlation_id, correlation_id.set(correlation)))
    if execution is not None:
        tokens.append((execution_id, execution_id.set(str(execution))))
    if node is not None:
        tokens.append((node_id, node_id.set(node)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
