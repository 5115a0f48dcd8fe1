"""ORM models: the tables PostgreSQL keeps as the single source of truth."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.domain.states import NODE_WAITING, ExecutionStatus, NodeStatus, WorkflowStatus


def _in(column: str, values: Iterable[object]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in sorted(map(str, values)))})"


class Workflow(Base):
    __tablename__ = "workflows"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        CheckConstraint(_in("status", WorkflowStatus), name="status"),
        Index(None, "status", "name"),
        Index(None, "created_at", "id"),  # newest first, a page at a time
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(255))  # peer-a's limit; Stepwise's API takes 200
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    # A deadline for each execution, from its start (fractions of a second allowed): past
    # it, the execution fails.
    timeout_seconds: Mapped[float | None] = mapped_column(Double)
    # A node failing for good fails the execution at once: its unfinished nodes are
    # cancelled rather than left to finish (peer-a's semantics; Airflow's fail_fast).
    fail_fast: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Submitted with its run through the peers' API (POST /workflow): never the version
    # a trigger by name picks.
    adhoc: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WorkflowEvent(Base):
    """The audit trail of a definition (created, activated, archived): insert-only."""

    __tablename__ = "workflow_events"
    __table_args__ = (Index(None, "workflow_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("clock_timestamp()"))


class WorkflowNode(Base):
    __tablename__ = "workflow_nodes"
    # An execution's nodes are listed in this order, a page at a time (a cursor is a position).
    __table_args__ = (UniqueConstraint("workflow_id", "position"),)

    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    handler: Mapped[str] = mapped_column(String(100))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dependencies: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    # Kept up to date as nodes are defined, so finishing a node finds its
    # children with one primary-key read: O(out-degree), no scan.
    dependents: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    timeout_seconds: Mapped[int | None]
    retry_policy: Mapped[dict[str, Any] | None]
    position: Mapped[int]
    step_order: Mapped[int | None]
    trigger_rule: Mapped[str] = mapped_column(String(40), default="all_success", server_default="all_success")
    when_expression: Mapped[str | None] = mapped_column(Text)
    branch: Mapped[bool | None]
    # The expression the node actually runs under: its branch and its `when`.
    guard: Mapped[str | None] = mapped_column(Text)
    # A guard in peer-a's grammar (app/domain/peer_a.py): text compared after its templates
    # are rendered. A node has a guard or a condition, not both.
    condition: Mapped[str | None] = mapped_column(Text)


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        # NULL keys never collide, so executions without a key are unrestricted.
        UniqueConstraint("workflow_id", "idempotency_key"),
        CheckConstraint(_in("status", ExecutionStatus), name="status"),
        Index(None, "workflow_id", "created_at"),
        Index(None, "status", "created_at"),
        Index(None, "created_at", "id"),  # newest first, a page at a time
        # The scheduler's work lists: each partial index holds only the rows waiting.
        Index(None, "scheduled_at", postgresql_where=text("status = 'PENDING'")),
        Index(None, "deadline_at", postgresql_where=text("status = 'RUNNING' AND deadline_at IS NOT NULL")),
        Index(None, "retry_at", postgresql_where=text("status = 'RETRYING'")),
        Index(None, "finished_at", postgresql_where=text("finished_at IS NOT NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id"))
    status: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    input: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The trigger's config overrides, by node id, merged over those nodes' configs for this run.
    node_params: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    attempt: Mapped[int] = mapped_column(default=1)
    correlation_id: Mapped[str | None] = mapped_column(String(200))
    nodes_total: Mapped[int]
    # Its nodes by status, kept by the statement that moves them (in the same transaction):
    # the countdown (the transaction that leaves no node unfinished ends the execution)
    # and what a status poll answers without reading the nodes.
    node_counts: Mapped[dict[str, int]] = mapped_column(server_default=text("'{}'::jsonb"))
    # Automatic retries of the whole execution when it fails, and when the next is due.
    max_retries: Mapped[int] = mapped_column(default=0)
    retry_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scheduled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Outbound handlers (http, llm) answer with a synthetic response instead of calling out.
    dry_run: Mapped[bool] = mapped_column(default=False, server_default=false())
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def count(self, statuses: frozenset[NodeStatus]) -> int:
        """Its nodes in any of these states."""
        return sum(self.node_counts.get(str(s), 0) for s in statuses)


class NodeExecution(Base):
    __tablename__ = "node_executions"
    __table_args__ = (
        UniqueConstraint("execution_id", "node_id"),
        CheckConstraint(_in("status", NodeStatus), name="status"),
        # The scheduler's work lists: each partial index holds only the rows waiting.
        Index(None, "not_before", postgresql_where=text(_in("status", NODE_WAITING))),
        Index(None, "queued_at", postgresql_where=text("status = 'QUEUED'")),
        Index(None, "started_at", postgresql_where=text("status = 'RUNNING'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(default=0)
    # Parents not finished yet, and how the finished ones ended (the rest succeeded).
    remaining_deps: Mapped[int]
    failed_parents: Mapped[int] = mapped_column(default=0)
    skipped_parents: Mapped[int] = mapped_column(default=0)
    output: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # UP_FOR_RETRY, DEFERRED: the next attempt is not queued before this.
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When a DEFERRED node was to wake; kept for the run that follows.
    wake_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rq_job_id: Mapped[str | None] = mapped_column(String(100))
    worker_name: Mapped[str | None] = mapped_column(String(200))


class ExecutionLog(Base):
    """The audit trail: insert-only, one row per transition and per handler log line."""

    __tablename__ = "execution_logs"
    __table_args__ = (
        Index(None, "execution_id", "id"),
        Index(None, "level", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"))
    node_id: Mapped[str | None] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(8))
    event: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The request (or the request behind the job) that caused this row.
    correlation_id: Mapped[str | None] = mapped_column(String(200))
    # clock_timestamp, not now(): rows of one transaction keep their real order in time.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("clock_timestamp()"))


class DeadLetter(Base):
    """A node that used up its attempts: what failed, why, and how to run it again."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index(None, "created_at"),
        Index(None, "workflow_id", "created_at"),
        Index(None, "execution_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"))
    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id"))
    node_execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("node_executions.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(String(100))
    handler: Mapped[str] = mapped_column(String(100))
    error_class: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WorkerHeartbeat(Base):
    """Each live worker process, as it last reported itself. A RUNNING node whose
    worker stopped reporting was lost with it. Kept in PostgreSQL, not Redis, so
    losing Redis cannot make a live worker look dead."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int]
    # True when the worker runs its nodes in its own process (SimpleWorker) and so reports
    # which it holds; a forking worker cannot, and its nodes are judged by their RQ jobs.
    tracks_current: Mapped[bool]
    # Every node it holds (claimed and not yet recorded): a RUNNING node of a live worker
    # that is not here was lost.
    running: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(Uuid), server_default=text("'{}'::uuid[]"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    """An API key: only its SHA-256 is kept; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('reader', 'writer', 'admin')", name="role"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))  # the key's first characters, to recognise it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
