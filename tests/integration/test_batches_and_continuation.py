"""Batches and continuation against the real database: a node is claimed once however
deliveries race, a worker continues only into what it may run, and every node's counts
stay exact through failures, cancels and retries."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

import tests.handlers  # noqa: F401  (registers the plug-in handlers: EXCLUSIVE ones)
from app.dispatch import Dispatcher
from app.domain.dag import NodeSpec
from app.handlers.registry import RunMode
from app.models import Execution, ExecutionLog, NodeExecution
from app.runtime import Runtime
from app.services import executions, lifecycle, node_runs
from app.services.executions import ExecutionView
from app.services.node_runs import Outcome
from app.services.progress import Continuation
from tests.integration.test_node_lifecycle import BOOM, in_parallel, log_events


def counts_match_the_nodes(runtime: Runtime, execution_id: uuid.UUID) -> None:
    """The execution row's counts by status are exactly what its nodes say."""
    with runtime.sessions() as s, s.begin():
        kept = s.scalar(select(Execution.node_counts).where(Execution.id == execution_id))
        actual = dict(
            s.execute(
                select(NodeExecution.status, func.count())
                .where(NodeExecution.execution_id == execution_id)
                .group_by(NodeExecution.status)
            ).all()
        )
    assert {k: v for k, v in kept.items() if v} == actual


def jobs_carrying(dispatcher: Dispatcher) -> dict[str, tuple[str, list[str]]]:
    """Node execution id (hex) -> (the job that carries it, the job's mode), from the queue."""
    return {node_id: (job.id, job.args[1]) for job in dispatcher.queue.get_jobs() for node_id, _ in job.args[0]}


def test_racing_deliveries_of_a_batch_claim_each_node_once(
    start_execution: Callable[..., ExecutionView], node_rows, runtime: Runtime
) -> None:
    view = start_execution([NodeSpec(f"r{i}", "noop") for i in range(60)])
    wanted = [(row.id, 1) for row in node_rows(view.execution.id).values()]

    def claim(i: int) -> list[Any]:
        with runtime.sessions() as s:
            return node_runs.claim_nodes(s, wanted, f"worker-{i}")

    claimed = [node.id for batch in in_parallel(6, claim) for node in batch]
    assert sorted(claimed) == sorted(node_id for node_id, _ in wanted)  # every node once, none twice
    running = Counter(log_events(runtime, view.execution.id))["node.running"]
    assert running == 60
    counts_match_the_nodes(runtime, view.execution.id)


def test_a_finishing_worker_continues_into_its_in_process_children(
    start_execution: Callable[..., ExecutionView], node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    view = start_execution([NodeSpec("a", "noop"), NodeSpec("b", "noop", ("a",)), NodeSpec("c", "noop", ("b",))])
    with runtime.sessions() as s:
        (a,) = node_runs.claim_nodes(s, [(node_rows(view.execution.id)["a"].id, 1)], "w1")
        with node_runs.recording(s, idle_dispatcher) as recording:
            continuation = Continuation("w1", "job-1", {RunMode.INLINE: 10})
            (b,) = recording.record([Outcome(a, output={"x": 1})], continuation).claimed
    rows = node_rows(view.execution.id)
    assert (b.node_id, b.attempt) == ("b", 1)
    assert (rows["b"].status, rows["b"].worker_name, rows["b"].rq_job_id) == ("RUNNING", "w1", "job-1")
    assert rows["c"].status == "PENDING"
    assert log_events(runtime, view.execution.id, "b") == ["node.queued", "node.running"]
    assert rows["b"].id.hex not in jobs_carrying(idle_dispatcher)  # no trip through Redis
    counts_match_the_nodes(runtime, view.execution.id)


def test_continuation_takes_only_its_budget_and_its_modes(
    start_execution: Callable[..., ExecutionView], node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    children = [
        NodeSpec("n1", "noop", ("root",)),
        NodeSpec("n2", "noop", ("root",)),
        NodeSpec("n3", "noop", ("root",)),
        NodeSpec("call", "http_request", ("root",), config={"url": "http://127.0.0.1:9/"}),
        NodeSpec("plugin", "count", ("root",)),
    ]
    view = start_execution([NodeSpec("root", "noop"), *children])
    with runtime.sessions() as s:
        (root,) = node_runs.claim_nodes(s, [(node_rows(view.execution.id)["root"].id, 1)], "w1")
        with node_runs.recording(s, idle_dispatcher) as recording:
            continuation = Continuation("w1", "job-1", {RunMode.INLINE: 2})
            claimed = recording.record([Outcome(root, output={})], continuation).claimed
    assert len(claimed) == 2 and {n.handler for n in claimed} == {"noop"}
    rows = node_rows(view.execution.id)
    left = next(n for n in ("n1", "n2", "n3") if n not in {c.node_id for c in claimed})
    carried = jobs_carrying(idle_dispatcher)
    assert {rows[n].status for n in (left, "call", "plugin")} == {"QUEUED"}
    assert carried[rows[left].id.hex][1] == RunMode.INLINE
    assert carried[rows["call"].id.hex][1] == RunMode.CONCURRENT
    assert carried[rows["plugin"].id.hex] == (f"node-{rows['plugin'].id.hex}-1", RunMode.EXCLUSIVE)
    counts_match_the_nodes(runtime, view.execution.id)


def test_a_chain_recorded_in_one_transaction_completes_with_every_step_logged(
    start_execution: Callable[..., ExecutionView], node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    chain = [NodeSpec("n0", "noop")] + [NodeSpec(f"n{i}", "noop", (f"n{i - 1}",)) for i in range(1, 8)]
    view = start_execution(chain)
    with runtime.sessions() as s:
        node = node_runs.claim_nodes(s, [(node_rows(view.execution.id)["n0"].id, 1)], "w1")
        with node_runs.recording(s, idle_dispatcher) as recording:
            while node:
                continuation = Continuation("w1", "job-1", {RunMode.INLINE: 100})
                node = recording.record([Outcome(node[0], output={"step": node[0].node_id})], continuation).claimed
    with runtime.sessions() as s, s.begin():
        execution = s.get(Execution, view.execution.id)
        assert execution.status == "COMPLETED"
        assert execution.node_counts["COMPLETED"] == 8
    assert {r.status for r in node_rows(view.execution.id).values()} == {"COMPLETED"}
    assert log_events(runtime, view.execution.id, "n3") == ["node.queued", "node.running", "node.completed"]
    assert log_events(runtime, view.execution.id)[-1] == "execution.completed"
    counts_match_the_nodes(runtime, view.execution.id)


def test_results_of_a_batch_whose_execution_was_cancelled_are_dropped(
    start_execution: Callable[..., ExecutionView], node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    view = start_execution([NodeSpec(f"r{i}", "noop") for i in range(3)])
    wanted = [(row.id, 1) for row in node_rows(view.execution.id).values()]
    with runtime.sessions() as s:
        claimed = node_runs.claim_nodes(s, wanted, "w1")
        lifecycle.cancel(s, idle_dispatcher, view.execution.id)
        with node_runs.recording(s, idle_dispatcher) as recording:
            recorded = recording.record([Outcome(n, output={"late": True}) for n in claimed])
    assert len(recorded.dropped) == 3
    assert {(r.status, r.output is None) for r in node_rows(view.execution.id).values()} == {("CANCELLED", True)}
    counts_match_the_nodes(runtime, view.execution.id)


def test_counts_stay_exact_through_failure_retry_and_cancel(
    start_execution: Callable[..., ExecutionView], node_rows, runtime: Runtime, idle_dispatcher: Dispatcher
) -> None:
    view = start_execution(
        [NodeSpec("a", "noop"), NodeSpec("b", "noop", ("a",)), NodeSpec("c", "noop", ("b",)), NodeSpec("d", "noop")]
    )
    eid = view.execution.id
    with runtime.sessions() as s:
        claimed = {n.node_id: n for n in node_runs.claim_nodes(s, [(node_rows(eid)[n].id, 1) for n in "ad"], "w")}
        node_runs.fail_node(s, idle_dispatcher, claimed["a"], BOOM)
        counts_match_the_nodes(runtime, eid)
        node_runs.complete_node(s, idle_dispatcher, claimed["d"], {})
        counts_match_the_nodes(runtime, eid)
        with s.begin():
            assert s.get(Execution, eid).status == "FAILED"
        lifecycle.retry(s, idle_dispatcher, eid)
        counts_match_the_nodes(runtime, eid)
        assert {k: r.status for k, r in node_rows(eid).items()} == {
            "a": "QUEUED",
            "b": "PENDING",
            "c": "PENDING",
            "d": "COMPLETED",
        }
        lifecycle.cancel(s, idle_dispatcher, eid)
    counts_match_the_nodes(runtime, eid)
    assert events_in(runtime, eid).count("execution.cancelled") == 1


def events_in(runtime: Runtime, execution_id: uuid.UUID) -> list[str]:
    with runtime.sessions() as s, s.begin():
        return list(
            s.scalars(
                select(ExecutionLog.event).where(ExecutionLog.execution_id == execution_id).order_by(ExecutionLog.id)
            )
        )


def test_an_execution_that_starts_now_is_made_running_with_its_roots_queued(
    runtime: Runtime, start_execution: Callable[..., ExecutionView], node_rows, idle_dispatcher: Dispatcher
) -> None:
    view = start_execution([NodeSpec("a", "noop"), NodeSpec("b", "noop", ("a",))])
    with runtime.sessions() as s:
        replayed_key = executions.TriggerRequest(workflow_id=view.workflow.id, idempotency_key="k-1")
        first = executions.trigger(s, idle_dispatcher, replayed_key)
        again = executions.trigger(s, idle_dispatcher, replayed_key)
    assert first.created and not again.created and first.execution.id == again.execution.id
    assert first.execution.status == "RUNNING" and first.execution.started_at is not None
    rows = node_rows(first.execution.id)
    assert (rows["a"].status, rows["a"].attempt, rows["b"].status) == ("QUEUED", 1, "PENDING")
    assert events_in(runtime, first.execution.id) == ["execution.created", "execution.running", "node.queued"]
    counts_match_the_nodes(runtime, first.execution.id)
