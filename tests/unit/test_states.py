"""The state tables, checked pair by pair."""

from __future__ import annotations

import itertools

import pytest

from app.domain.errors import InvalidTransitionError
from app.domain.states import (
    EXECUTION_FINISHED,
    EXECUTION_TRANSITIONS,
    NODE_FINISHED,
    NODE_TRANSITIONS,
    ExecutionStatus,
    NodeStatus,
    WorkflowStatus,
    check_execution_transition,
    check_node_transition,
    execution_sources,
    node_sources,
    workflow_sources,
)

E, N = ExecutionStatus, NodeStatus

EXPECTED_EXECUTION_MOVES = {
    (E.PENDING, E.RUNNING),
    (E.PENDING, E.CANCELLED),
    (E.RUNNING, E.COMPLETED),
    (E.RUNNING, E.FAILED),
    (E.RUNNING, E.CANCELLED),
    (E.FAILED, E.RETRYING),
    (E.RETRYING, E.RUNNING),
    (E.RETRYING, E.CANCELLED),
}


@pytest.mark.parametrize("current,target", list(itertools.product(E, E)))
def test_execution_table_allows_exactly_the_documented_moves(current: E, target: E) -> None:
    if (current, target) in EXPECTED_EXECUTION_MOVES:
        check_execution_transition(current, target)
        assert current in execution_sources(target)
    else:
        with pytest.raises(InvalidTransitionError):
            check_execution_transition(current, target)
        assert current not in execution_sources(target)


def test_every_unfinished_execution_can_be_cancelled_and_no_finished_one_can() -> None:
    for status in E:
        assert (E.CANCELLED in EXECUTION_TRANSITIONS[status]) == (status not in EXECUTION_FINISHED)


def test_cancelled_and_completed_are_final() -> None:
    assert EXECUTION_TRANSITIONS[E.CANCELLED] == frozenset()
    assert EXECUTION_TRANSITIONS[E.COMPLETED] == frozenset()
    assert NODE_TRANSITIONS[N.COMPLETED] == frozenset()
    # a node cancelled by its execution's deadline may run again when the execution is retried
    assert NODE_TRANSITIONS[N.CANCELLED] == {N.PENDING}


def test_a_retry_waits_outside_the_queue() -> None:
    assert node_sources(N.UP_FOR_RETRY) == {N.RUNNING}
    assert NODE_TRANSITIONS[N.UP_FOR_RETRY] == {N.QUEUED, N.CANCELLED}


def test_node_runs_only_through_queued_and_running() -> None:
    assert node_sources(N.RUNNING) == {N.QUEUED}
    assert node_sources(N.COMPLETED) == {N.RUNNING}
    assert node_sources(N.QUEUED) == {N.PENDING, N.UP_FOR_RETRY, N.DEFERRED}


def test_only_nodes_that_did_not_succeed_go_back_to_pending() -> None:
    assert node_sources(N.PENDING) == {N.FAILED, N.UPSTREAM_FAILED, N.CANCELLED}
    with pytest.raises(InvalidTransitionError):
        check_node_transition(N.COMPLETED, N.PENDING)


def test_finished_nodes_are_the_ones_without_a_forward_move() -> None:
    forward = set(N) - {N.PENDING}  # back to PENDING is a retry, not progress
    for status in N:
        has_forward_move = bool(NODE_TRANSITIONS[status] & forward)
        assert has_forward_move == (status not in NODE_FINISHED), status


def test_workflow_lifecycle() -> None:
    assert workflow_sources(WorkflowStatus.ACTIVE) == {WorkflowStatus.DRAFT}
    assert workflow_sources(WorkflowStatus.ARCHIVED) == {WorkflowStatus.DRAFT, WorkflowStatus.ACTIVE}
    assert workflow_sources(WorkflowStatus.DRAFT) == frozenset()


def test_invalid_transition_error_names_both_states() -> None:
    with pytest.raises(InvalidTransitionError) as info:
        check_execution_transition(E.COMPLETED, E.RUNNING)
    assert info.value.details == {"current_status": "COMPLETED", "requested_status": "RUNNING"}
    assert info.value.status_code == 409
