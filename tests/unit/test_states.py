"""The state tables: what may move where, and the named sets of states built on them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from app.domain.states import (
    EXECUTION_FINISHED,
    EXECUTION_TRANSITIONS,
    NODE_FAILURES,
    NODE_FINISHED,
    NODE_PARENT_FAILED,
    NODE_RERUNNABLE,
    NODE_TRANSITIONS,
    NODE_UNFINISHED,
    NODE_WAITING,
    WORKFLOW_TRANSITIONS,
    ExecutionStatus,
    NodeStatus,
    WorkflowStatus,
    execution_sources,
    node_sources,
    values,
    workflow_sources,
)

E, N, W = ExecutionStatus, NodeStatus, WorkflowStatus

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

EXPECTED_NODE_MOVES = {
    (N.PENDING, N.QUEUED),
    (N.PENDING, N.SKIPPED),
    (N.PENDING, N.UPSTREAM_FAILED),
    (N.PENDING, N.CANCELLED),
    (N.QUEUED, N.RUNNING),
    (N.QUEUED, N.CANCELLED),
    (N.RUNNING, N.COMPLETED),
    (N.RUNNING, N.FAILED),
    (N.RUNNING, N.UP_FOR_RETRY),
    (N.RUNNING, N.DEFERRED),
    (N.RUNNING, N.SKIPPED),
    (N.RUNNING, N.CANCELLED),
    (N.UP_FOR_RETRY, N.QUEUED),
    (N.UP_FOR_RETRY, N.CANCELLED),
    (N.DEFERRED, N.QUEUED),
    (N.DEFERRED, N.CANCELLED),
    (N.FAILED, N.PENDING),
    (N.UPSTREAM_FAILED, N.PENDING),
    (N.CANCELLED, N.PENDING),
}

Table = Mapping[Any, frozenset[Any]]
TABLES: list[Table] = [WORKFLOW_TRANSITIONS, EXECUTION_TRANSITIONS, NODE_TRANSITIONS]


def moves(table: Table) -> set[tuple[Any, Any]]:
    return {(source, target) for source, targets in table.items() for target in targets}


def reachable(table: Table, start: Any) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in table[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_tables_allow_exactly_the_documented_moves() -> None:
    assert moves(EXECUTION_TRANSITIONS) == EXPECTED_EXECUTION_MOVES
    assert moves(NODE_TRANSITIONS) == EXPECTED_NODE_MOVES
    assert moves(WORKFLOW_TRANSITIONS) == {(W.DRAFT, W.ACTIVE), (W.DRAFT, W.ARCHIVED), (W.ACTIVE, W.ARCHIVED)}


@pytest.mark.parametrize("target", list(N))
def test_node_sources_read_the_table_backwards(target: N) -> None:
    assert node_sources(target) == {source for source, to in EXPECTED_NODE_MOVES if to == target}


@pytest.mark.parametrize("target", list(E))
def test_execution_sources_read_the_table_backwards(target: E) -> None:
    assert execution_sources(target) == {source for source, to in EXPECTED_EXECUTION_MOVES if to == target}


@pytest.mark.parametrize("table", TABLES)
def test_every_state_has_a_row_and_none_moves_to_itself(table: Table) -> None:
    enum = type(next(iter(table)))
    assert set(table) == set(enum)
    for source, targets in table.items():
        assert targets <= set(enum)
        assert source not in targets, source  # a guarded UPDATE that changes nothing, and an audit row for it


@pytest.mark.parametrize(
    "table,start", [(WORKFLOW_TRANSITIONS, W.DRAFT), (EXECUTION_TRANSITIONS, E.PENDING), (NODE_TRANSITIONS, N.PENDING)]
)
def test_every_state_is_reachable_from_where_rows_start(table: Table, start: Any) -> None:
    assert reachable(table, start) == set(table)


@pytest.mark.parametrize(
    "table,finished",
    [(EXECUTION_TRANSITIONS, EXECUTION_FINISHED), (NODE_TRANSITIONS, NODE_FINISHED)],
)
def test_nothing_gets_stuck_short_of_finished(table: Table, finished: frozenset[Any]) -> None:
    for status in set(table) - finished:
        assert reachable(table, status) & finished, status


def test_finished_executions_leave_only_by_a_retry_of_a_failed_one() -> None:
    leaving = {(source, target) for source, target in EXPECTED_EXECUTION_MOVES if source in EXECUTION_FINISHED}
    assert leaving == {(E.FAILED, E.RETRYING)}
    assert EXECUTION_TRANSITIONS[E.COMPLETED] == EXECUTION_TRANSITIONS[E.CANCELLED] == frozenset()


def test_finished_nodes_leave_only_back_to_pending_and_only_the_rerunnable_ones() -> None:
    for status in NODE_FINISHED:
        assert NODE_TRANSITIONS[status] <= {N.PENDING}, status
    assert {status for status in NODE_FINISHED if NODE_TRANSITIONS[status]} == NODE_RERUNNABLE
    assert node_sources(N.PENDING) == NODE_RERUNNABLE
    # completed and skipped nodes keep their outcome through any retry
    assert NODE_TRANSITIONS[N.COMPLETED] == NODE_TRANSITIONS[N.SKIPPED] == frozenset()


def test_finished_nodes_are_the_ones_without_a_forward_move() -> None:
    forward = set(N) - {N.PENDING}  # back to PENDING is a retry, not progress
    for status in N:
        has_forward_move = bool(NODE_TRANSITIONS[status] & forward)
        assert has_forward_move == (status not in NODE_FINISHED), status


def test_finished_and_unfinished_nodes_partition_the_states() -> None:
    assert set(N) == NODE_FINISHED | NODE_UNFINISHED
    assert not NODE_FINISHED & NODE_UNFINISHED


def test_a_cancel_reaches_every_unfinished_state_and_no_finished_one() -> None:
    assert execution_sources(E.CANCELLED) == set(E) - EXECUTION_FINISHED
    assert node_sources(N.CANCELLED) == NODE_UNFINISHED


def test_waiting_nodes_come_from_a_running_attempt_and_hold_no_worker() -> None:
    assert NODE_WAITING <= NODE_UNFINISHED
    for status in NODE_WAITING:
        assert node_sources(status) == {N.RUNNING}, status
        assert NODE_TRANSITIONS[status] == {N.QUEUED, N.CANCELLED}, status
    # the other unfinished nodes wait for their parents (PENDING) or a worker (QUEUED), or hold one
    assert {N.PENDING, N.QUEUED, N.RUNNING} == NODE_UNFINISHED - NODE_WAITING


def test_a_node_runs_only_through_queued_and_running() -> None:
    assert node_sources(N.RUNNING) == {N.QUEUED}
    assert node_sources(N.QUEUED) == {N.PENDING} | NODE_WAITING
    for outcome in (N.COMPLETED, N.FAILED, N.UP_FOR_RETRY, N.DEFERRED):  # what only a handler can say
        assert node_sources(outcome) == {N.RUNNING}, outcome


def test_what_fails_an_execution_or_a_child_runs_again_on_retry() -> None:
    assert NODE_FAILURES <= NODE_RERUNNABLE
    assert NODE_PARENT_FAILED <= NODE_RERUNNABLE
    assert NODE_RERUNNABLE <= NODE_FINISHED
    assert N.COMPLETED not in NODE_PARENT_FAILED | NODE_FAILURES
    assert N.SKIPPED not in NODE_PARENT_FAILED | NODE_FAILURES


def test_states_are_stored_by_name() -> None:
    # SQL compares them with literals ('QUEUED') and node_counts keys them by value.
    for status in [*E, *N]:
        assert status.value == status.name
    assert values(NODE_WAITING) == ["DEFERRED", "UP_FOR_RETRY"]
    assert values(EXECUTION_FINISHED) == ["CANCELLED", "COMPLETED", "FAILED"]


def test_workflow_lifecycle() -> None:
    assert workflow_sources(W.ACTIVE) == {W.DRAFT}
    assert workflow_sources(W.ARCHIVED) == {W.DRAFT, W.ACTIVE}
    assert workflow_sources(W.DRAFT) == frozenset()
    assert WORKFLOW_TRANSITIONS[W.ARCHIVED] == frozenset()


def architecture_table(title: str) -> set[tuple[str, str]]:
    """The moves a state table in docs/ARCHITECTURE.md lists (notes in parentheses aside)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md").read_text()
    table = text.split(f"\n{title}:\n\n", 1)[1].split("\n\n", 1)[0]
    found = set()
    for sources, targets in re.findall(r"^\| (.+?) \| (.+?) \|$", table, re.M)[2:]:  # after the header
        for source in sources.split(", "):
            for target in re.sub(r"\([^)]*\)", "", targets).split(","):
                if target.strip():
                    found.add((source, target.strip()))
    return found


def test_the_architecture_document_shows_the_tables() -> None:
    assert architecture_table("Execution") == {(str(a), str(b)) for a, b in EXPECTED_EXECUTION_MOVES}
    assert architecture_table("Node") == {(str(a), str(b)) for a, b in EXPECTED_NODE_MOVES}
