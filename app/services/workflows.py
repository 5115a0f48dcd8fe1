"""Use cases for workflow definitions: define, add steps to a draft, activate, archive, read."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain import dag, templates
from app.domain.errors import ConflictError, InvalidWorkflowError, NotFoundError, Problem
from app.domain.states import WorkflowStatus
from app.handlers import registry
from app.handlers.registry import STEPWISE
from app.models import Workflow, WorkflowNode
from app.repositories import audit, paging
from app.repositories import workflows as workflows_repo


@dataclass(frozen=True)
class WorkflowDraft:
    name: str
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    nodes: Sequence[dag.NodeSpec] = ()
    activate: bool = False
    timeout_seconds: float | None = None  # each execution's deadline, from its start
    adhoc: bool = False  # submitted with its run; never picked by a trigger by name
    fail_fast: bool = False  # a node failing for good fails the execution at once


@dataclass(frozen=True)
class WorkflowDetail:
    workflow: Workflow
    nodes: list[workflows_repo.NodeRow]


def problems_of(nodes: Sequence[dag.NodeSpec], limits: dag.Limits) -> list[Problem]:
    """Structural problems and each node's config problems, all at once."""
    foreign = {n.node_id for n in nodes if registry.dialect(n.handler) != STEPWISE}
    problems = dag.find_problems(nodes, registry.names(), limits, foreign)
    for node in nodes:
        problems.extend(registry.config_problems(node.node_id, node.handler, node.config))
    return problems


def create_workflow(session: Session, draft: WorkflowDraft, limits: dag.Limits) -> WorkflowDetail:
    """Store a new version of the named workflow; validated in full before anything is written."""
    nodes = checked_nodes(draft, limits)
    with session.begin():
        return store(session, draft, nodes)


def checked_nodes(draft: WorkflowDraft, limits: dag.Limits) -> list[dag.NodeSpec]:
    """The draft's nodes (step orders turned into dependencies), or InvalidWorkflowError
    with every problem. A draft that is not activated may be empty."""
    nodes = dag.with_step_order_dependencies(draft.nodes, limits)
    if nodes or draft.activate:
        problems = problems_of(nodes, limits)
        if problems:
            raise InvalidWorkflowError(f"workflow {draft.name!r} is not valid", problems=problems)
    return list(nodes)


def store(session: Session, draft: WorkflowDraft, nodes: Sequence[dag.NodeSpec]) -> WorkflowDetail:
    """Write the next version of the named workflow with its checked nodes (in the
    caller's transaction)."""
    workflow = Workflow(
        id=uuid.uuid4(),
        name=draft.name,
        version=workflows_repo.next_version(session, draft.name),
        status=WorkflowStatus.ACTIVE if draft.activate else WorkflowStatus.DRAFT,
        description=draft.description,
        meta=draft.metadata,
        timeout_seconds=draft.timeout_seconds,
        adhoc=draft.adhoc,
        fail_fast=draft.fail_fast,
        activated_at=func.now() if draft.activate else None,
    )
    session.add(workflow)
    session.flush()
    audit.record_workflow_event(
        session,
        workflow.id,
        "workflow.created",
        f"{workflow.name} v{workflow.version} defined as {workflow.status}" + (" (ad hoc)" if draft.adhoc else ""),
        {"status": str(workflow.status), "nodes": len(nodes), **({"adhoc": True} if draft.adhoc else {})},
    )
    handlers = {n.node_id: n.handler for n in nodes}
    guards = {n.node_id: dag.effective_guard(n, handlers) for n in nodes}
    rows = workflows_repo.insert_nodes(session, workflow.id, nodes, dag.dependents_map(nodes), guards)
    session.refresh(workflow)
    return WorkflowDetail(workflow, rows)


def override_problems(
    session: Session, workflow_id: uuid.UUID, node_params: Mapping[str, Mapping[str, Any]], limits: dag.Limits
) -> list[Problem]:
    """What is wrong with a trigger's config overrides (`node_params`), checked as a
    definition is once they are merged over the nodes' configs, each named by
    `node_params.<node id>...`. Reads the workflow's nodes (in the caller's transaction)."""
    specs = {row.node_id: _spec(row) for row in workflows_repo.nodes_of(session, workflow_id)}
    found: list[Problem] = []
    for node_id, overrides in node_params.items():
        if node_id not in specs:
            found.append(Problem("config", f"the workflow has no node {node_id!r}", "unknown_node", node_id))
            continue
        spec = specs[node_id] = replace(specs[node_id], config={**specs[node_id].config, **overrides})
        found += dag.config_size_problems(spec, limits)
        found += registry.config_problems(node_id, spec.handler, spec.config)
    # Templates, once for all the overridden nodes (the others' were checked at definition).
    unchecked = {n for n, s in specs.items() if n not in node_params or registry.dialect(s.handler) != STEPWISE}
    found += dag.template_problems(list(specs.values()), skip=unchecked)
    problems = []
    for problem in found:
        path = problem.field.removeprefix("config").lstrip(".")
        where = f"node_params.{problem.node_id}"
        problems.append(replace(problem, field=f"{where}.{path}" if path else where))
    return problems


def _spec(node: workflows_repo.NodeRow) -> dag.NodeSpec:
    return dag.NodeSpec(
        node.node_id,
        node.handler,
        tuple(node.dependencies),
        node.config,
        node.timeout_seconds,
        node.step_order,
        node.retry_policy,
        node.trigger_rule,
        node.when_expression,
        node.branch,
        node.condition,
    )


def _locked(session: Session, workflow_id: uuid.UUID) -> Workflow:
    workflow = session.get(Workflow, workflow_id, with_for_update=True)
    if workflow is None:
        raise NotFoundError(f"workflow {workflow_id} not found")
    return workflow


def add_step(session: Session, workflow_id: uuid.UUID, step: dag.NodeSpec, limits: dag.Limits) -> WorkflowNode:
    """Append a node to a draft. Its dependencies must already exist, so no cycle can
    form and only the new node needs checking: O(its degree), not O(the DAG)."""
    with session.begin():
        # The row lock makes a concurrent activate or add_step wait for this one.
        workflow = _locked(session, workflow_id)
        if workflow.status != WorkflowStatus.DRAFT:
            raise ConflictError(
                f"workflow {workflow.name!r} v{workflow.version} is {workflow.status} and cannot change; "
                "define it again under the same name to create the next version",
                details={"current_status": workflow.status},
            )
        if step.step_order is not None and not step.dependencies:
            previous = workflows_repo.previous_step_nodes(session, workflow_id, step.step_order)
            step = replace(step, dependencies=tuple(previous))
        node_count, edge_count = workflows_repo.size(session, workflow_id)
        existing = workflows_repo.existing_node_ids(session, workflow_id, [step.node_id, *step.dependencies])
        problems = dag.new_node_problems(step, existing, node_count, edge_count, registry.names(), limits)
        problems.extend(registry.config_problems(step.node_id, step.handler, step.config))
        if not problems and (step.when or step.branch is not None or any(templates.walk(step.config))):
            # Templates and guards may read any ancestor: only they need the whole draft.
            specs = [_spec(n) for n in workflows_repo.nodes_of(session, workflow_id)]
            problems.extend(dag.template_problems([*specs, step], only=step.node_id))
        if problems:
            raise InvalidWorkflowError(f"step {step.node_id!r} is not valid", problems=problems)
        handlers = workflows_repo.handlers_of(session, workflow_id, list(step.dependencies))
        guard = dag.effective_guard(step, handlers)
        workflows_repo.insert_nodes(session, workflow_id, [step], {}, {step.node_id: guard}, first_position=node_count)
        workflows_repo.add_dependent(session, workflow_id, list(dict.fromkeys(step.dependencies)), step.node_id)
        return session.scalars(
            select(WorkflowNode).where(WorkflowNode.workflow_id == workflow_id, WorkflowNode.node_id == step.node_id)
        ).one()


def activate(session: Session, workflow_id: uuid.UUID, limits: dag.Limits) -> WorkflowDetail:
    """Validate the draft's DAG and freeze it. Activating an active workflow changes nothing."""
    with session.begin():
        workflow = _locked(session, workflow_id)
        nodes = workflows_repo.nodes_of(session, workflow_id)
        if workflow.status == WorkflowStatus.DRAFT:
            problems = problems_of([_spec(n) for n in nodes], limits)
            if problems:
                raise InvalidWorkflowError(f"workflow {workflow.name!r} cannot be activated", problems=problems)
        return WorkflowDetail(_move(session, workflow, WorkflowStatus.ACTIVE, activated_at=func.now()), nodes)


def archive(session: Session, workflow_id: uuid.UUID) -> WorkflowDetail:
    """No new executions; running ones finish. Archiving an archived workflow changes nothing."""
    with session.begin():
        workflow = _locked(session, workflow_id)
        nodes = workflows_repo.nodes_of(session, workflow_id)
        return WorkflowDetail(_move(session, workflow, WorkflowStatus.ARCHIVED), nodes)


def _move(session: Session, workflow: Workflow, target: WorkflowStatus, **values: Any) -> Workflow:
    if workflow.status == target:
        return workflow
    moved = workflows_repo.transition(session, workflow, target, **values)
    if moved is None:
        raise ConflictError(
            f"workflow {workflow.name!r} v{workflow.version} is {workflow.status} and cannot become {target}",
            details={"current_status": workflow.status},
        )
    return moved


def get_workflow(session: Session, workflow_id: uuid.UUID) -> WorkflowDetail:
    """A workflow with its nodes."""
    with session.begin():
        workflow = session.get(Workflow, workflow_id)
        if workflow is None:
            raise NotFoundError(f"workflow {workflow_id} not found")
        return WorkflowDetail(workflow, workflows_repo.nodes_of(session, workflow_id))


def list_workflows(session: Session, **page: Any) -> paging.Page[Workflow]:
    """A page of workflows, newest first (see workflows_repo.page for the filters)."""
    with session.begin():
        return workflows_repo.page(session, **page)
