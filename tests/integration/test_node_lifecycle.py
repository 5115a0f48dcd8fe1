"""Guarded transitions against the real database: races are lost quietly, effects happen once."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.dispatch import Dispatcher
from app.domain.dag import NodeSpec
from app.domain.states import NODE_UNFINISHED, ExecutionStatus, NodeStatus
from app.models import Execution, ExecutionLog
from app.repositories import node_moves
from app.runtime import Runtime
from app.services import executions, lifecycle, node_runs

BOOM = node_runs.Failure("RuntimeError", "handler_error", "boom", retryable=False)


def in_parallel(count: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(i) in `count` threads released at the same instant."""
    barrier = threading.Barrier(count)

    def go(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(go, range(count)))


def log_events(runtime: Runtime, execution_id: uuid.UUID, node_id: str | None = None) -> list[str]:
    with runtime.sessions() as s, s.begin():
        query = select(ExecutionLog.event).where(ExecutionLog.execution_id == execution_id).order_by(ExecutionLog.id)
        if node_id is not None:
            query = query.where(ExecutionLog.node_id == node_id)
        return list(s.scalars(query))


def test_trigger_queues_the_roots_and_logs_each_step(
    start_execution, node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    view = start_execution([NodeSpec("a", "noop"), NodeSpec("b", "noop"), NodeSpec("c", "noop", ("a", "b"))])
    rows = node_rows(view.execution.id)
    assert {k: (r.status, r.attempt) for k, r in rows.items()} == {
        "a": ("QUEUED", 1),
        "b": ("QUEUED", 1),
        "c": ("PENDING", 0),
    }
    # Two in-process roots go out together: one RQ job carries both.
    assert rows["a"].rq_job_id == rows["b"].rq_job_id
    (job,) = idle_dispatcher.queue.get_jobs()
    assert job.id == rows["a"].rq_job_id
    assert sorted(job.args[0]) == sorted([[rows["a"].id.hex, 1], [rows["b"].id.hex, 1]])
    assert view.execution.status == ExecutionStatus.RUNNING
    assert log_events(runtime, view.execution.id)[:2] == ["execution.created", "execution.running"]


def test_two_workers_claiming_one_node_one_wins(start_execution, node_rows, runtime: Runtime) -> None:
    view = start_execution([NodeSpec("a", "noop")])
    node = node_rows(view.execution.id)["a"]

    def claim(i: int) -> Any:
        with runtime.sessions() as s:
            return node_runs.claim_node(s, node.id, 1, f"worker-{i}")

    claims = in_parallel(8, claim)
    assert sum(c is not None for c in claims) == 1
    assert log_events(runtime, view.execution.id, "a").count("node.running") == 1


def test_completed_and_failed_racing_for_one_node_exactly_one_wins(
    start_execution, node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    view = start_execution([NodeSpec("a", "noop")])
    node_id = node_rows(view.execution.id)["a"].id
    with runtime.sessions() as s:
        claimed = node_runs.claim_node(s, node_id, 1, "w")
    assert claimed is not None

    def finish(i: int) -> bool:
        with runtime.sessions() as s:
            if i % 2:
                return node_runs.complete_node(s, idle_dispatcher, claimed, {"ok": i})
            return node_runs.fail_node(s, idle_dispatcher, claimed, BOOM)

    results = in_parallel(6, finish)
    assert results.count(True) == 1
    row = node_rows(view.execution.id)["a"]
    events = log_events(runtime, view.execution.id, "a")
    assert events.count("node.completed") + events.count("node.failed") == 1
    with runtime.sessions() as s, s.begin():
        execution = s.get(Execution, view.execution.id)
        assert execution.status == (ExecutionStatus.COMPLETED if row.status == "COMPLETED" else ExecutionStatus.FAILED)
        assert execution.count(NODE_UNFINISHED) == 0  # counted down once, not six times


def test_a_result_for_a_stale_attempt_is_discarded(
    start_execution, node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    view = start_execution([NodeSpec("a", "noop")])
    node_id = node_rows(view.execution.id)["a"].id
    with runtime.sessions() as s:
        claimed = node_runs.claim_node(s, node_id, 1, "w")
        assert node_runs.claim_node(s, node_id, 2, "w") is None  # no attempt 2 is queued
    stale = type(claimed)(**{**claimed.__dict__, "attempt": 2})
    with runtime.sessions() as s:
        assert node_runs.complete_node(s, idle_dispatcher, stale, {"late": True}) is False
    assert node_rows(view.execution.id)["a"].status == NodeStatus.RUNNING
    assert node_rows(view.execution.id)["a"].output is None


def test_a_late_result_for_a_cancelled_node_is_discarded(
    start_execution, node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    view = start_execution([NodeSpec("a", "noop")])
    node_id = node_rows(view.execution.id)["a"].id
    with runtime.sessions() as s:
        claimed = node_runs.claim_node(s, node_id, 1, "w")
    with runtime.sessions() as s, s.begin():
        node_moves.finish(s, view.execution.id, NodeStatus.CANCELLED, ids=[node_id])
    with runtime.sessions() as s:
        assert node_runs.complete_node(s, idle_dispatcher, claimed, {"late": True}) is False
    row = node_rows(view.execution.id)["a"]
    assert (row.status, row.output) == ("CANCELLED", None)


def test_a_status_change_and_its_audit_row_commit_or_roll_back_together(
    start_execution, node_rows, runtime: Runtime
) -> None:
    view = start_execution([NodeSpec("a", "noop")])
    before = log_events(runtime, view.execution.id)
    with pytest.raises(RuntimeError), runtime.sessions() as s, s.begin():
        moved = node_moves.finish(s, view.execution.id, NodeStatus.CANCELLED, node_ids=["a"])
        assert len(moved) == 1
        raise RuntimeError("crash before commit")
    assert node_rows(view.execution.id)["a"].status == NodeStatus.QUEUED
    assert log_events(runtime, view.execution.id) == before


def test_move_refuses_a_source_the_state_table_forbids(session: Session) -> None:
    with pytest.raises(ValueError):
        node_moves.finish(session, uuid.uuid4(), NodeStatus.COMPLETED, expected=[NodeStatus.PENDING])


def test_one_hundred_parents_finishing_at_once_queue_the_child_exactly_once(
    start_execution, node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    parents = [NodeSpec(f"p{i}", "noop") for i in range(100)]
    view = start_execution([*parents, NodeSpec("child", "noop", tuple(p.node_id for p in parents))])
    rows = node_rows(view.execution.id)
    claimed = []
    with runtime.sessions() as s:
        for p in parents:
            claimed.append(node_runs.claim_node(s, rows[p.node_id].id, 1, "w"))

    def complete(i: int) -> bool:
        with runtime.sessions() as s:
            return node_runs.complete_node(s, idle_dispatcher, claimed[i], {"i": i})

    assert all(in_parallel(100, complete))
    child = node_rows(view.execution.id)["child"]
    assert (child.status, child.attempt, child.remaining_deps) == ("QUEUED", 1, 0)
    assert log_events(runtime, view.execution.id, "child") == ["node.queued"]
    carried = [node_id for job in idle_dispatcher.queue.get_jobs() for node_id, _ in job.args[0]]
    assert len(carried) == 101  # the 100 roots at trigger, then the child once
    assert carried.count(child.id.hex) == 1
    with runtime.sessions() as s, s.begin():
        assert s.get(Execution, view.execution.id).count(NODE_UNFINISHED) == 1


def test_a_failed_node_fails_its_descendants_and_then_the_execution(
    start_execution, node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    # a -> b -> c, and d independent: d still runs; the execution fails once d is done.
    view = start_execution(
        [NodeSpec("a", "noop"), NodeSpec("b", "noop", ("a",)), NodeSpec("c", "noop", ("b",)), NodeSpec("d", "noop")]
    )
    rows = node_rows(view.execution.id)
    with runtime.sessions() as s:
        a = node_runs.claim_node(s, rows["a"].id, 1, "w")
        d = node_runs.claim_node(s, rows["d"].id, 1, "w")
        node_runs.fail_node(s, idle_dispatcher, a, BOOM)
        assert {k: r.status for k, r in node_rows(view.execution.id).items()} == {
            "a": "FAILED",
            "b": "UPSTREAM_FAILED",
            "c": "UPSTREAM_FAILED",
            "d": "RUNNING",
        }
        with s.begin():
            assert s.scalar(select(Execution.status).where(Execution.id == view.execution.id)) == "RUNNING"
        node_runs.complete_node(s, idle_dispatcher, d, {})
        with s.begin():
            execution = s.scalar(select(Execution).where(Execution.id == view.execution.id))
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error["reason"] == "node_failed"
    assert execution.finished_at is not None


def test_audit_trail_of_a_whole_run_is_complete_and_in_order(
    start_execution, node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    view = start_execution([NodeSpec("a", "noop"), NodeSpec("b", "noop", ("a",))])
    for node_id in ("a", "b"):
        row = node_rows(view.execution.id)[node_id]
        with runtime.sessions() as s:
            claimed = node_runs.claim_node(s, row.id, 1, "w")
            node_runs.complete_node(s, idle_dispatcher, claimed, {"n": node_id})
    assert log_events(runtime, view.execution.id) == [
        "execution.created",
        "execution.running",
        "node.queued",
        "node.running",
        "node.completed",
        "node.queued",
        "node.running",
        "node.completed",
        "execution.completed",
    ]
    with runtime.sessions() as s, s.begin():
        count = s.scalar(
            select(func.count()).select_from(ExecutionLog).where(ExecutionLog.execution_id == view.execution.id)
        )
    assert count == 9


def test_a_failure_cascade_racing_a_sibling_completion_does_not_deadlock(
    start_execution, node_rows, runtime: Runtime, idle_dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """p1 -> c, p2 -> c, p2 -> g, c -> g. p1 fails (cascading to c, then g) while p2
    completes (locking c and g). With node locks alone, the cascade's second
    statement and p2's statement could each hold what the other wants."""
    spec = [NodeSpec("p1", "noop"), NodeSpec("p2", "noop"), NodeSpec("c", "noop", ("p1", "p2"))]
    view = start_execution([*spec, NodeSpec("g", "noop", ("p2", "c"))])
    rows = node_rows(view.execution.id)
    while rows["g"].id > rows["c"].id:  # the bad order: p2's statement then locks g before c
        with runtime.sessions() as s:
            request = executions.TriggerRequest(workflow_id=view.workflow.id)
            view = executions.trigger(s, idle_dispatcher, request)
        rows = node_rows(view.execution.id)
    with runtime.sessions() as s:
        p1 = node_runs.claim_node(s, rows["p1"].id, 1, "w1")
        p2 = node_runs.claim_node(s, rows["p2"].id, 1, "w2")

    real = node_moves.count_parent_outcomes
    cascade_holds_locks = threading.Event()

    def slow_cascade(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if threading.current_thread().name == "cascade" and any(c.failed for c in args[3].values()):
            cascade_holds_locks.set()
            time.sleep(0.5)  # hold the first statement's locks while the sibling runs
        return result

    monkeypatch.setattr(node_moves, "count_parent_outcomes", slow_cascade)
    outcomes: dict[str, Any] = {}

    def fail_p1() -> None:
        with runtime.sessions() as s:
            outcomes["p1"] = node_runs.fail_node(s, idle_dispatcher, p1, BOOM)

    def complete_p2() -> None:
        cascade_holds_locks.wait(5)
        with runtime.sessions() as s:
            outcomes["p2"] = node_runs.complete_node(s, idle_dispatcher, p2, {"ok": True})

    threads = [threading.Thread(target=fail_p1, name="cascade"), threading.Thread(target=complete_p2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert outcomes == {"p1": True, "p2": True}
    states = {k: r.status for k, r in node_rows(view.execution.id).items()}
    assert states == {"p1": "FAILED", "p2": "COMPLETED", "c": "UPSTREAM_FAILED", "g": "UPSTREAM_FAILED"}
    with runtime.sessions() as s, s.begin():
        execution = s.get(Execution, view.execution.id)
        assert (execution.status, execution.count(NODE_UNFINISHED)) == ("FAILED", 0)


def test_cancel_does_not_deadlock_with_a_claim(
    start_execution, node_rows, runtime: Runtime, idle_dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel holds the execution row while a worker claims a node: the claim waits for
    the row (the global lock order: executions first), then finds the node cancelled."""
    view = start_execution([NodeSpec("a", "noop")])
    node_id = node_rows(view.execution.id)["a"].id
    real_stop = lifecycle._stop_nodes
    cancel_holds_row = threading.Event()
    claimed: dict[str, Any] = {}

    def slow_stop(*args: Any, **kwargs: Any) -> Any:
        cancel_holds_row.set()
        time.sleep(0.5)
        return real_stop(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "_stop_nodes", slow_stop)

    def claim() -> None:
        cancel_holds_row.wait(5)
        with runtime.sessions() as s:
            claimed["node"] = node_runs.claim_node(s, node_id, 1, "w")

    thread = threading.Thread(target=claim)
    thread.start()
    with runtime.sessions() as s:
        lifecycle.cancel(s, idle_dispatcher, view.execution.id)
        view = executions.get_execution(s, view.execution.id)
    thread.join(10)
    assert not thread.is_alive() and "node" in claimed  # no deadlock
    assert claimed["node"] is None  # it waited for the row, and cancel had won
    assert view.execution.status == "CANCELLED"
    assert node_rows(view.execution.id)["a"].status == "CANCELLED"


def test_retrying_a_dead_letter_after_a_deadline_reruns_the_cancelled_nodes(
    start_execution, node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    from sqlalchemy import text as sql

    from app.models import DeadLetter

    view = start_execution([NodeSpec("a", "noop"), NodeSpec("b", "noop"), NodeSpec("c", "noop", ("b",))])
    rows = node_rows(view.execution.id)
    with runtime.sessions() as s:
        a = node_runs.claim_node(s, rows["a"].id, 1, "w")
        node_runs.claim_node(s, rows["b"].id, 1, "w")
        node_runs.fail_node(s, idle_dispatcher, a, BOOM)
        with s.begin():
            s.execute(
                sql("UPDATE executions SET deadline_at = now() - interval '1 second' WHERE id = :id"),
                {"id": view.execution.id},
            )
        assert lifecycle.expire_deadline(s, idle_dispatcher, view.execution.id)
    assert {k: r.status for k, r in node_rows(view.execution.id).items()} == {
        "a": "FAILED",
        "b": "CANCELLED",
        "c": "CANCELLED",
    }
    with runtime.sessions() as s:
        with s.begin():
            letter_id = s.scalars(select(DeadLetter.id).where(DeadLetter.execution_id == view.execution.id)).one()
        detail = executions.get_execution(s, lifecycle.retry_dead_letter(s, idle_dispatcher, letter_id))
    assert detail.execution.status == "RUNNING"
    assert {n.node_id: n.status for n in detail.nodes} == {"a": "QUEUED", "b": "QUEUED", "c": "PENDING"}
