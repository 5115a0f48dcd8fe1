"""Workflow definitions: versions, nodes and their guarded status changes."""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from app.domain.dag import NodeSpec
from app.domain.states import WorkflowStatus, workflow_sources
from app.models import Workflow, WorkflowNode
from app.repositories import audit, paging
from app.repositories.prepared import Prepared


def next_version(session: Session, name: str) -> int:
    """The version a new workflow called `name` gets; holds a lock on the name until commit.

    The advisory lock makes two concurrent definitions of one name queue up
    instead of both reading the same max(version).
    """
    session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"workflow:{name}"})
    current = session.scalar(select(func.max(Workflow.version)).where(Workflow.name == name))
    return (current or 0) + 1


@dataclass(frozen=True)
class NodeRow:
    """A workflow node as stored (a plain value: reading thousands costs no ORM bookkeeping)."""

    workflow_id: uuid.UUID
    node_id: str
    handler: str
    config: dict[str, Any]
    dependencies: list[str]
    dependents: list[str]
    timeout_seconds: int | None
    retry_policy: dict[str, Any] | None
    position: int
    step_order: int | None
    trigger_rule: str
    when_expression: str | None
    branch: bool | None
    guard: str | None
    condition: str | None = None


_INSERT_NODES = Prepared(
    "insert_workflow_nodes",
    """
    INSERT INTO workflow_nodes (workflow_id, node_id, handler, config, dependencies, dependents, timeout_seconds,
                                retry_policy, position, step_order, trigger_rule, when_expression, branch, guard,
                                condition)
    SELECT :workflow_id, n.node_id, n.handler, n.config,
           ARRAY(SELECT jsonb_array_elements_text(n.dependencies)),
           ARRAY(SELECT jsonb_array_elements_text(n.dependents)),
           n.timeout_seconds, n.retry_policy, n.position, n.step_order, n.trigger_rule, n.when_expression, n.branch,
           n.guard, n.condition
    FROM unnest(:node_ids, :handlers, CAST(:configs AS jsonb[]), CAST(:dependencies AS jsonb[]),
                CAST(:dependents AS jsonb[]), :timeouts, CAST(:retry_policies AS jsonb[]), :positions, :step_orders,
                :trigger_rules, :whens, :branches, :guards, :conditions)
         AS n(node_id, handler, config, dependencies, dependents, timeout_seconds, retry_policy, position,
              step_order, trigger_rule, when_expression, branch, guard, condition)
    """,
    [
        ("workflow_id", "uuid"),
        ("node_ids", "text[]"),
        ("handlers", "text[]"),
        ("configs", "text[]"),
        ("dependencies", "text[]"),
        ("dependents", "text[]"),
        ("timeouts", "integer[]"),
        ("retry_policies", "text[]"),
        ("positions", "integer[]"),
        ("step_orders", "integer[]"),
        ("trigger_rules", "text[]"),
        ("whens", "text[]"),
        ("branches", "boolean[]"),
        ("guards", "text[]"),
        ("conditions", "text[]"),
    ],
)


def insert_nodes(
    session: Session,
    workflow_id: uuid.UUID,
    nodes: Sequence[NodeSpec],
    dependents: dict[str, list[str]],
    guards: dict[str, str | None],
    first_position: int = 0,
) -> list[NodeRow]:
    """Insert a workflow's nodes in one statement, numbering their positions from
    `first_position`; the rows as inserted."""
    rows = [
        NodeRow(
            workflow_id=workflow_id,
            node_id=node.node_id,
            handler=node.handler,
            config=dict(node.config),
            dependencies=list(dict.fromkeys(node.dependencies)),
            dependents=dependents.get(node.node_id, []),
            timeout_seconds=node.timeout_seconds,
            retry_policy=dict(node.retry) if node.retry else None,
            position=first_position + i,
            step_order=node.step_order,
            trigger_rule=str(node.trigger_rule),
            when_expression=node.when,
            branch=node.branch,
            guard=guards.get(node.node_id),
            condition=node.condition,
        )
        for i, node in enumerate(nodes)
    ]
    if rows:
        _INSERT_NODES.execute(
            session,
            {
                "workflow_id": workflow_id,
                "node_ids": [r.node_id for r in rows],
                "handlers": [r.handler for r in rows],
                "configs": [json.dumps(r.config) for r in rows],
                "dependencies": [json.dumps(r.dependencies) for r in rows],
                "dependents": [json.dumps(r.dependents) for r in rows],
                "timeouts": [r.timeout_seconds for r in rows],
                "retry_policies": [json.dumps(r.retry_policy) if r.retry_policy else None for r in rows],
                "positions": [r.position for r in rows],
                "step_orders": [r.step_order for r in rows],
                "trigger_rules": [r.trigger_rule for r in rows],
                "whens": [r.when_expression for r in rows],
                "branches": [r.branch for r in rows],
                "guards": [r.guard for r in rows],
                "conditions": [r.condition for r in rows],
            },
        )
    return rows


def add_dependent(session: Session, workflow_id: uuid.UUID, parents: Sequence[str], child: str) -> None:
    """Record `child` among the dependents of each of its parents."""
    if parents:
        session.execute(
            update(WorkflowNode)
            .where(WorkflowNode.workflow_id == workflow_id, WorkflowNode.node_id.in_(parents))
            .values(dependents=func.array_append(WorkflowNode.dependents, child))
        )


_NODE_ROW_COLUMNS = [getattr(WorkflowNode, f.name) for f in fields(NodeRow)]


def nodes_of(session: Session, workflow_id: uuid.UUID) -> list[NodeRow]:
    """A workflow's nodes in definition order."""
    rows = session.execute(
        select(*_NODE_ROW_COLUMNS).where(WorkflowNode.workflow_id == workflow_id).order_by(WorkflowNode.position)
    )
    return [NodeRow(**row._mapping) for row in rows]


def size(session: Session, workflow_id: uuid.UUID) -> tuple[int, int]:
    """(nodes, dependencies summed over nodes) of a workflow."""
    row = session.execute(
        select(func.count(), func.coalesce(func.sum(func.cardinality(WorkflowNode.dependencies)), 0)).where(
            WorkflowNode.workflow_id == workflow_id
        )
    ).one()
    return row[0], row[1]


def handlers_of(session: Session, workflow_id: uuid.UUID, node_ids: Sequence[str]) -> dict[str, str]:
    """Node id -> handler, for the named nodes of a workflow."""
    rows = session.execute(
        select(WorkflowNode.node_id, WorkflowNode.handler).where(
            WorkflowNode.workflow_id == workflow_id, WorkflowNode.node_id.in_(node_ids)
        )
    )
    return {node_id: handler for node_id, handler in rows}


def existing_node_ids(session: Session, workflow_id: uuid.UUID, node_ids: Sequence[str]) -> set[str]:
    """Which of `node_ids` the workflow has."""
    return set(
        session.scalars(
            select(WorkflowNode.node_id).where(
                WorkflowNode.workflow_id == workflow_id, WorkflowNode.node_id.in_(node_ids)
            )
        )
    )


def previous_step_nodes(session: Session, workflow_id: uuid.UUID, step_order: int) -> list[str]:
    """The ids of the nodes in the greatest step order below `step_order`."""
    previous = (
        select(func.max(WorkflowNode.step_order))
        .where(WorkflowNode.workflow_id == workflow_id, WorkflowNode.step_order < step_order)
        .scalar_subquery()
    )
    return list(
        session.scalars(
            select(WorkflowNode.node_id)
            .where(WorkflowNode.workflow_id == workflow_id, WorkflowNode.step_order == previous)
            .order_by(WorkflowNode.position)
        )
    )


def latest_active(session: Session, name: str) -> Workflow | None:
    """The highest active version of the named workflow, or None. Ad-hoc versions
    (submitted with their run) do not count: they are not the workflow's to replace."""
    return session.scalar(
        select(Workflow)
        .where(Workflow.name == name, Workflow.status == WorkflowStatus.ACTIVE, Workflow.adhoc.is_(False))
        .order_by(Workflow.version.desc())
        .limit(1)
    )


def latest(session: Session, name: str) -> Workflow | None:
    """The highest version of the named workflow, whatever its status, or None; ad-hoc
    versions (submitted with their run) do not count."""
    return session.scalar(
        select(Workflow)
        .where(Workflow.name == name, Workflow.adhoc.is_(False))
        .order_by(Workflow.version.desc())
        .limit(1)
    )


def page(
    session: Session,
    *,
    statuses: Sequence[str],
    name: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    after: paging.Key | None,
    limit: int,
    count: bool,
) -> paging.Page[Workflow]:
    """Workflows that match, newest first, a page after `after`."""
    query = select(Workflow)
    if statuses:
        query = query.where(Workflow.status.in_(statuses))
    if name:
        query = query.where(Workflow.name == name)
    if created_after:
        query = query.where(Workflow.created_at >= created_after)
    if created_before:
        query = query.where(Workflow.created_at < created_before)
    return paging.newest_first(
        session, query, Workflow.created_at, Workflow.id, after=after, limit=limit, count=count,
        key_of=lambda w: (w.created_at, w.id),
    )  # fmt: skip


def transition(session: Session, workflow: Workflow, target: WorkflowStatus, **values: Any) -> Workflow | None:
    """Move a workflow to `target` if the state table allows it from where it is, and
    log it; else None. The caller holds the row lock, so `workflow.status` is current."""
    previous = workflow.status
    moved = session.scalar(
        update(Workflow)
        .where(Workflow.id == workflow.id, Workflow.status.in_(workflow_sources(target)))
        .values(status=target, updated_at=func.now(), **values)
        .returning(Workflow)
    )
    if moved is not None:
        audit.record_workflow_event(
            session,
            workflow.id,
            f"workflow.{target}",
            f"{workflow.name} v{workflow.version}: {previous} -> {target}",
            {"from": previous, "to": str(target)},
        )
    return moved


_COLUMNS = """id, name, version, status, description, metadata, timeout_seconds, adhoc, fail_fast, created_at,
              updated_at, activated_at"""
# FOR SHARE: an archive waits for the trigger that read the row to commit, so no run starts after it.
_BY_ID = Prepared(
    "workflow_for_trigger", f"SELECT {_COLUMNS} FROM workflows WHERE id = :id FOR SHARE", [("id", "uuid")]
)
_ACTIVE_BY_NAME = Prepared(
    "active_workflow_for_trigger",
    f"""
    SELECT {_COLUMNS} FROM workflows
    WHERE name = :name AND status = 'active' AND NOT adhoc
    ORDER BY version DESC LIMIT 1
    FOR SHARE
    """,
    [("name", "text")],
)


def _workflow(row: Any) -> Workflow:
    values = row._asdict()
    values["meta"] = values.pop("metadata")
    return Workflow(**values)


def for_trigger(session: Session, workflow_id: uuid.UUID) -> Workflow | None:
    """A workflow version, share-locked until commit (an archive waits for the trigger)."""
    row = _BY_ID.execute(session, {"id": workflow_id}).first()
    return _workflow(row) if row else None


def active_for_trigger(session: Session, name: str) -> Workflow | None:
    """The latest active, not ad-hoc version of the named workflow, share-locked until commit."""
    row = _ACTIVE_BY_NAME.execute(session, {"name": name}).first()
    return _workflow(row) if row else None


@dataclass(frozen=True)
class StartPlan:
    """What starting an execution of a workflow version needs to know of its nodes."""

    nodes: int
    roots: dict[str, str]  # node id -> handler, of the nodes without parents, in position order
    guarded_roots: bool  # a root with a `when` guard: the start must evaluate it


_PLAN = Prepared(
    "start_plan",
    """
    SELECT count(*) AS nodes,
           COALESCE(array_agg(node_id ORDER BY position) FILTER (WHERE cardinality(dependencies) = 0), '{}') AS roots,
           COALESCE(array_agg(handler ORDER BY position) FILTER (WHERE cardinality(dependencies) = 0), '{}')
               AS handlers,
           COALESCE(bool_or(guard IS NOT NULL) FILTER (WHERE cardinality(dependencies) = 0), false) AS guarded
    FROM workflow_nodes WHERE workflow_id = :workflow_id
    """,
    [("workflow_id", "uuid")],
)
_PLANS: OrderedDict[uuid.UUID, StartPlan] = OrderedDict()
_PLANS_LOCK = threading.Lock()
_PLANS_KEPT = 1000


def start_plan(session: Session, workflow_id: uuid.UUID) -> StartPlan:
    """The start plan of an active version, read once per process: an active version's
    nodes never change."""
    with _PLANS_LOCK:
        plan = _PLANS.get(workflow_id)
        if plan is not None:
            _PLANS.move_to_end(workflow_id)
            return plan
    row = _PLAN.execute(session, {"workflow_id": workflow_id}).one()
    plan = StartPlan(row.nodes, dict(zip(row.roots, row.handlers, strict=True)), row.guarded)
    with _PLANS_LOCK:
        _PLANS[workflow_id] = plan
        while len(_PLANS) > _PLANS_KEPT:
            _PLANS.popitem(last=False)
    return plan
