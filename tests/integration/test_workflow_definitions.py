"""Workflow status changes are guarded and leave an audit trail."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain.dag import NodeSpec
from app.domain.errors import ConflictError
from app.models import WorkflowEvent
from app.runtime import Runtime
from app.services import workflows


def events(runtime: Runtime, workflow_id: uuid.UUID) -> list[tuple[str, dict]]:
    with runtime.sessions() as s, s.begin():
        rows = s.scalars(
            select(WorkflowEvent).where(WorkflowEvent.workflow_id == workflow_id).order_by(WorkflowEvent.id)
        )
        return [(e.event, e.details) for e in rows]


def test_each_status_change_writes_its_event(session: Session, runtime: Runtime) -> None:
    draft = workflows.WorkflowDraft(name=f"ev-{uuid.uuid4().hex[:8]}", nodes=[NodeSpec("a", "noop")])
    workflow_id = workflows.create_workflow(session, draft, runtime.limits).workflow.id
    workflows.activate(session, workflow_id, runtime.limits)
    workflows.activate(session, workflow_id, runtime.limits)  # already active: nothing happens
    workflows.archive(session, workflow_id)
    with pytest.raises(ConflictError):
        workflows.activate(session, workflow_id, runtime.limits)
    assert events(runtime, workflow_id) == [
        ("workflow.created", {"status": "draft", "nodes": 1}),
        ("workflow.active", {"from": "draft", "to": "active"}),
        ("workflow.archived", {"from": "active", "to": "archived"}),
    ]
