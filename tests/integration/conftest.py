"""Integration fixtures: services against the real database, with a queue no worker reads."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.dispatch import Dispatcher
from app.domain.dag import NodeSpec
from app.models import NodeExecution
from app.runtime import Runtime
from app.services import executions, workflows


@pytest.fixture
def session(runtime: Runtime) -> Iterator[Session]:
    with runtime.sessions() as s:
        yield s


@pytest.fixture
def idle_dispatcher(runtime: Runtime) -> Dispatcher:
    """Enqueues to a queue of its own, so the tests drive every node step by hand."""
    return Dispatcher(runtime.redis, f"idle-{uuid.uuid4().hex}")


@pytest.fixture
def start_execution(
    session: Session, runtime: Runtime, idle_dispatcher: Dispatcher
) -> Callable[..., executions.ExecutionView]:
    """Define an active workflow from NodeSpecs and trigger it once."""

    def start(nodes: list[NodeSpec], input: dict[str, Any] | None = None) -> executions.ExecutionView:
        detail = workflows.create_workflow(
            session,
            workflows.WorkflowDraft(name=f"it-{uuid.uuid4().hex[:10]}", nodes=nodes, activate=True),
            runtime.limits,
        )
        return executions.trigger(
            session, idle_dispatcher, executions.TriggerRequest(workflow_id=detail.workflow.id, input=input or {})
        )

    return start


@pytest.fixture
def node_rows(runtime: Runtime) -> Callable[[uuid.UUID], dict[str, NodeExecution]]:
    def rows(execution_id: uuid.UUID) -> dict[str, NodeExecution]:
        with runtime.sessions() as s, s.begin():
            found = s.scalars(select(NodeExecution).where(NodeExecution.execution_id == execution_id))
            return {n.node_id: n for n in found}

    return rows
