"""The scheduler's ticks against the real database and Redis, without workers."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace

from redis import Redis
from rq.job import Job
from sqlalchemy import select, text, update

from app.domain.dag import NodeSpec
from app.models import Execution, ExecutionLog, NodeExecution, Workflow, WorkflowNode
from app.repositories import workers as workers_repo
from app.runtime import Runtime
from app.services import executions, node_runs, scheduler
from app.services.executions import ExecutionView
from app.services.workflows import WorkflowDraft

FAST = scheduler.SchedulerSettings(interval_seconds=0.05, queued_grace_seconds=0, worker_lost_seconds=3600)


def idle_runtime(runtime: Runtime) -> Runtime:
    """The test database and Redis, with a queue no worker reads."""
    return Runtime.from_settings(replace(runtime.settings, queue_name=f"idle-{uuid.uuid4().hex}"))


def test_finished_executions_past_retention_are_purged_with_their_rows(
    runtime: Runtime, start_execution: Callable[..., ExecutionView]
) -> None:
    old = start_execution([NodeSpec("a", "noop")])
    recent = start_execution([NodeSpec("a", "noop")])
    with runtime.sessions() as s, s.begin():
        s.execute(
            update(Execution)
            .where(Execution.id.in_([old.execution.id, recent.execution.id]))
            .values(status="COMPLETED", finished_at=text("now() - interval '8 days'"))
        )
        s.execute(update(Execution).where(Execution.id == recent.execution.id).values(finished_at=text("now()")))
    scheduler.tick(idle_runtime(runtime), FAST)
    with runtime.sessions() as s, s.begin():
        assert s.get(Execution, old.execution.id) is None
        assert s.get(Execution, recent.execution.id) is not None
        assert not s.scalars(select(NodeExecution.id).where(NodeExecution.execution_id == old.execution.id)).all()
        assert not s.scalars(select(ExecutionLog.id).where(ExecutionLog.execution_id == old.execution.id)).all()


def test_ad_hoc_workflows_go_with_their_last_execution_and_untriggered_submissions_expire(
    runtime: Runtime, start_execution: Callable[..., ExecutionView]
) -> None:
    def submit() -> ExecutionView:
        with runtime.sessions() as s:
            draft = WorkflowDraft(name=f"adhoc-{uuid.uuid4().hex[:8]}", nodes=[NodeSpec("a", "noop")])
            return executions.submit_adhoc(s, draft, runtime.limits, executions.TriggerRequest())

    ran, untriggered, fresh = submit(), submit(), submit()
    kept = start_execution([NodeSpec("a", "noop")])  # a defined workflow outlives its executions
    with runtime.sessions() as s, s.begin():
        ids = [ran.execution.id, kept.execution.id]
        s.execute(
            update(Execution)
            .where(Execution.id.in_(ids))
            .values(status="COMPLETED", finished_at=text("now() - interval '8 days'"))
        )
        s.execute(
            update(Execution)
            .where(Execution.id == untriggered.execution.id)
            .values(created_at=text("now() - interval '8 days'"))
        )
    report = scheduler.tick(idle_runtime(runtime), FAST)
    assert report["purged"] >= 3 and report["purged_workflows"] >= 2
    with runtime.sessions() as s, s.begin():
        for gone in (ran, untriggered):
            assert s.get(Execution, gone.execution.id) is None
            assert s.get(Workflow, gone.workflow.id) is None
            assert not s.scalars(select(WorkflowNode.node_id).where(WorkflowNode.workflow_id == gone.workflow.id)).all()
        assert s.get(Workflow, kept.workflow.id) is not None and s.get(Execution, kept.execution.id) is None
        assert s.get(Execution, fresh.execution.id) is not None and s.get(Workflow, fresh.workflow.id) is not None


def test_a_queued_node_whose_job_is_gone_is_enqueued_again_once(runtime: Runtime, node_rows, start_execution) -> None:
    rt = idle_runtime(runtime)
    with rt.sessions() as s:
        view = executions.trigger(s, rt.dispatcher, executions.TriggerRequest(workflow_id=_workflow(start_execution)))
    row = node_rows(view.execution.id)["a"]
    redis = Redis.from_url(runtime.settings.redis_url)
    redis.delete(Job.key_for(row.rq_job_id))  # as if Redis had lost it
    assert rt.dispatcher.lost([row.rq_job_id]) == {row.rq_job_id}
    assert scheduler.tick(rt, FAST).get("requeued") == 1
    assert rt.dispatcher.lost([row.rq_job_id]) == set()
    assert rt.dispatcher.queue.job_ids.count(row.rq_job_id) >= 1
    assert scheduler.tick(rt, FAST).get("requeued") is None  # it exists now: left alone
    with runtime.sessions() as s, s.begin():
        events = s.scalars(
            select(ExecutionLog.event).where(
                ExecutionLog.execution_id == view.execution.id, ExecutionLog.node_id == "a"
            )
        ).all()
    assert events.count("node.requeued") == 1


def test_a_healthy_backlog_is_looked_for_once_not_every_tick(runtime: Runtime, node_rows, start_execution) -> None:
    rt = idle_runtime(runtime)
    with rt.sessions() as s:
        view = executions.trigger(s, rt.dispatcher, executions.TriggerRequest(workflow_id=_workflow(start_execution)))
    row = node_rows(view.execution.id)["a"]
    settings = replace(FAST, queued_grace_seconds=30)
    with runtime.sessions() as s, s.begin():  # waiting in a long backlog, its job in the queue all along
        s.execute(
            update(NodeExecution).where(NodeExecution.id == row.id).values(queued_at=text("now() - interval '1 hour'"))
        )
    state = scheduler.SchedulerState()
    looked, requeued = [], 0
    for _ in range(50):  # the first sweep pages through every QUEUED node in the database
        report = scheduler.tick(rt, settings, state)
        looked.append(report.get("looked_up", 0))
        requeued += report.get("requeued", 0)
        if looked[-1] == 0:
            break
    assert looked[0] >= 1 and looked[-1] == 0 and requeued == 0  # its job was there
    assert scheduler.tick(rt, settings, state).get("looked_up") is None  # not again, however long it waits
    redis = Redis.from_url(runtime.settings.redis_url)
    redis.delete(Job.key_for(row.rq_job_id), "stepwise:epoch")  # Redis lost its data
    assert scheduler.tick(rt, settings, state).get("requeued") == 1


def test_a_job_taken_by_a_worker_that_then_dies_is_enqueued_again(runtime: Runtime, node_rows, start_execution) -> None:
    rt = idle_runtime(runtime)
    with rt.sessions() as s:
        view = executions.trigger(s, rt.dispatcher, executions.TriggerRequest(workflow_id=_workflow(start_execution)))
    row = node_rows(view.execution.id)["a"]
    worker = f"doomed-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(runtime.settings.redis_url)
    redis.hset(Job.key_for(row.rq_job_id), mapping={"status": "started", "worker_name": worker})  # it took the job
    with runtime.sessions() as s, s.begin():
        workers_repo.beat(s, worker, "host", 1, True, [])
    settings = replace(FAST, worker_lost_seconds=30)
    state = scheduler.SchedulerState()
    # Past its grace while its worker lives: left alone, and not looked for again on its own.
    assert scheduler.tick(rt, settings, state).get("requeued") is None
    assert scheduler.tick(rt, settings, state).get("requeued") is None
    with runtime.sessions() as s, s.begin():  # the worker falls silent (kill -9)
        s.execute(text("UPDATE workers SET heartbeat_at = now() - interval '1 minute' WHERE name = :n"), {"n": worker})
    assert scheduler.tick(rt, settings, state).get("requeued") == 1


def _workflow(start_execution: Callable[..., ExecutionView]) -> uuid.UUID:
    return start_execution([NodeSpec("a", "noop")]).workflow.id


def test_a_due_retry_is_queued_as_the_next_attempt(runtime: Runtime, node_rows, start_execution) -> None:
    rt = idle_runtime(runtime)
    with rt.sessions() as s:
        view = executions.trigger(s, rt.dispatcher, executions.TriggerRequest(workflow_id=_workflow(start_execution)))
        node = node_runs.claim_node(s, node_rows(view.execution.id)["a"].id, 1, "w")
        failure = node_runs.Failure("Boom", "handler_error", "boom", retryable=True, retry_after=0)
        assert node_runs.fail_node(s, rt.dispatcher, node, failure)
    assert node_rows(view.execution.id)["a"].status == "UP_FOR_RETRY"
    assert scheduler.tick(rt, FAST).get("retried") == 1
    row = node_rows(view.execution.id)["a"]
    assert (row.status, row.attempt, row.not_before) == ("QUEUED", 2, None)
    assert f"node-{row.id.hex}-2" in rt.dispatcher.queue.job_ids


PRIVATE_LOCK = 424_242  # not the real scheduler's, which may be running beside these tests


def _leaders(runtime: Runtime) -> int:
    with runtime.engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key AND granted"),
            {"key": PRIVATE_LOCK},
        ).scalar_one()


def test_only_one_scheduler_leads(runtime: Runtime) -> None:
    stop = threading.Event()
    settings = replace(FAST, leader_lock=PRIVATE_LOCK)
    threads = [threading.Thread(target=scheduler.run, args=(idle_runtime(runtime), settings, stop)) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(50):
            if _leaders(runtime):
                break
            stop.wait(0.1)
        stop.wait(0.5)  # the others have had their tries
        assert _leaders(runtime) == 1
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert _leaders(runtime) == 0  # a stopping leader lets go


def test_a_failing_tick_lets_go_of_the_lock_and_leads_again(runtime: Runtime, monkeypatch) -> None:
    calls = {"n": 0}
    real_tick = scheduler.tick

    def flaky_tick(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a tick that blows up")
        return real_tick(*args, **kwargs)

    monkeypatch.setattr(scheduler, "tick", flaky_tick)
    stop = threading.Event()
    settings = replace(FAST, leader_lock=PRIVATE_LOCK + 1, interval_seconds=0.02)
    thread = threading.Thread(target=scheduler.run, args=(idle_runtime(runtime), settings, stop))
    thread.start()
    try:
        for _ in range(100):
            if calls["n"] >= 3:
                break
            stop.wait(0.05)
        assert calls["n"] >= 3  # it did not die with the first error
    finally:
        stop.set()
        thread.join(10)
