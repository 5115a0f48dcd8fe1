"""Reading node executions: a page of an execution's nodes, outputs, roots, ids by status."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.orm import Session, aliased

from app.domain.states import NodeStatus
from app.models import Execution, NodeExecution, WorkflowNode
from app.repositories.node_moves import ChildState, children

NE = NodeExecution


def page(
    session: Session,
    execution_id: uuid.UUID,
    workflow_id: uuid.UUID,
    *,
    statuses: Collection[NodeStatus] = (),
    after_position: int = -1,
    limit: int | None = None,
) -> list[tuple[NodeExecution, int]]:
    """The execution's nodes in the workflow's node order, after `after_position`, at most
    `limit` (all when None), in any of `statuses` (all when empty); each with its position.

    Walks the workflow's nodes by position and looks each one's run up by its unique key
    (a lateral join): a page costs its own size, whatever the planner knows of the tables.
    """
    run = select(NE).where(NE.execution_id == execution_id, NE.node_id == WorkflowNode.node_id).lateral("run")
    node = aliased(NE, run)
    query = (
        select(node, WorkflowNode.position)
        .select_from(WorkflowNode)
        .join(run, true())
        .where(WorkflowNode.workflow_id == workflow_id, WorkflowNode.position > after_position)
        .order_by(WorkflowNode.position)
    )
    if statuses:
        query = query.where(node.status.in_([str(s) for s in statuses]))
    if limit is not None:
        query = query.limit(limit)
    return [(found, position) for found, position in session.execute(query)]


def outputs(session: Session, execution_id: uuid.UUID) -> dict[str, Any]:
    """Node id -> output, for every completed node (templates and guards read theirs
    through outputs_by_handler, which knows the output aliases)."""
    query = select(NE.node_id, NE.output).where(NE.execution_id == execution_id, NE.status == NodeStatus.COMPLETED)
    return {node_id: output for node_id, output in session.execute(query)}


def outputs_by_handler(
    session: Session, execution_id: uuid.UUID, node_ids: Collection[str]
) -> dict[str, tuple[str, Any]]:
    """Node id -> (its handler, its output), for the named completed nodes."""
    query = (
        select(NE.node_id, WorkflowNode.handler, NE.output)
        .join(Execution, Execution.id == NE.execution_id)
        .join(WorkflowNode, (WorkflowNode.workflow_id == Execution.workflow_id) & (WorkflowNode.node_id == NE.node_id))
        .where(NE.execution_id == execution_id, NE.status == NodeStatus.COMPLETED, NE.node_id.in_(node_ids))
    )
    return {node_id: (handler, output) for node_id, handler, output in session.execute(query)}


def ids_with_status(session: Session, execution_id: uuid.UUID, statuses: Collection[NodeStatus]) -> list[str]:
    """Node ids of the execution in any of these states."""
    return list(
        session.scalars(
            select(NE.node_id).where(NE.execution_id == execution_id, NE.status.in_([str(s) for s in statuses]))
        )
    )


def root_states(session: Session, execution_id: uuid.UUID, workflow_id: uuid.UUID) -> list[ChildState]:
    """PENDING nodes with no parent to wait for, as ChildStates (an execution's start)."""
    rows = session.execute(
        select(
            NE.id,
            NE.node_id,
            NE.status,
            func.cardinality(WorkflowNode.dependencies).label("parents"),
            NE.remaining_deps,
            NE.failed_parents,
            NE.skipped_parents,
            WorkflowNode.handler,
            WorkflowNode.dependents,
            WorkflowNode.trigger_rule,
            WorkflowNode.guard,
            WorkflowNode.condition,
        )
        .join(WorkflowNode, (WorkflowNode.workflow_id == workflow_id) & (WorkflowNode.node_id == NE.node_id))
        .where(NE.execution_id == execution_id, NE.status == NodeStatus.PENDING, NE.remaining_deps == 0)
    )
    return children(rows)
