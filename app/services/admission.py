"""Admission: the API refuses new work while more nodes wait for a worker than it accepts.

Work accepted faster than the workers do it only joins a backlog that takes minutes to
drain, and every caller waits on it. Past MAX_QUEUED_NODES, a trigger gets 503 with
Retry-After instead, and the caller decides (retry later, shed, alert). The backlog is
counted at most once a second per process, from a small partial index (QUEUED nodes).
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.domain.errors import OverloadedError
from app.domain.states import NodeStatus
from app.models import NodeExecution

RETRY_AFTER_SECONDS = 2


def queued_nodes(session: Session) -> int:
    """Nodes waiting for a worker, across every execution."""
    with session.begin():
        return session.scalar(select(func.count()).where(NodeExecution.status == NodeStatus.QUEUED)) or 0


class Admission:
    """Counts the backlog now and then; refuses triggers while it is over the limit (0: no limit)."""

    def __init__(self, sessions: sessionmaker[Session], limit: int, fresh_seconds: float = 1.0) -> None:
        self.sessions, self.limit, self.fresh_seconds = sessions, limit, fresh_seconds
        self._backlog, self._counted_at = 0, float("-inf")
        self._lock = threading.Lock()

    def backlog(self) -> int:
        """QUEUED nodes, as counted within the last second."""
        with self._lock:
            if time.monotonic() - self._counted_at < self.fresh_seconds:
                return self._backlog
            self._counted_at = time.monotonic()  # one request counts; the others use the last count
        with self.sessions() as session:
            backlog = queued_nodes(session)
        with self._lock:
            self._backlog = backlog
        return backlog

    def check(self) -> None:
        """Raise OverloadedError (503, Retry-After) if the backlog is over the limit."""
        if self.limit <= 0:
            return
        backlog = self.backlog()
        if backlog >= self.limit:
            raise OverloadedError(
                f"{backlog} nodes wait for a worker (the limit is {self.limit}): try again later",
                retry_after=RETRY_AFTER_SECONDS,
                details={"queued_nodes": backlog, "limit": self.limit},
            )
