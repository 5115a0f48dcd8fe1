"""How finished nodes move their execution on: no central loop, just the step each finish causes.

Finished nodes are counted off their direct children in one statement per wave
(O(the edges counted)); each child whose trigger rule can now be settled is
queued (if its guard holds), skipped or marked upstream-failed; skips and
upstream failures cascade as the next wave. Ready children go out to RQ in
batches planned by the dispatcher, except those the finishing worker continues
into itself (`Continuation`). The caller holds the execution's row lock (the
global lock order), ends the execution when the countdown says nothing is left,
and enqueues the returned jobs after commit.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from app.dispatch import Dispatcher, NodeJob, single_job_id
from app.domain import peer_a, templates
from app.domain.states import NODE_PARENT_FAILED, NodeStatus
from app.domain.trigger_rules import Readiness, decide
from app.handlers import registry
from app.handlers.registry import RunMode
from app.repositories import claims, node_counts, node_moves, node_reads
from app.repositories import executions as executions_repo
from app.repositories.claims import ClaimedNode
from app.repositories.node_counts import Countdown
from app.repositories.node_moves import ChildState, MovedNode, ParentCounts


@dataclass(frozen=True)
class Finished:
    node_id: str
    dependents: Sequence[str]
    status: NodeStatus


@dataclass
class Continuation:
    """A worker that runs, itself, some of the children its finishes ready: up to
    `budget` nodes of each mode it takes, claimed in the same transaction."""

    worker_name: str
    job_id: str | None
    budget: dict[RunMode, int]
    claimed: list[ClaimedNode] = field(default_factory=list)

    def take(self, mode: RunMode, wanted: int) -> int:
        """How many of `wanted` ready nodes of this mode it takes; spends them."""
        taken = min(self.budget.get(mode, 0), wanted)
        if taken:
            self.budget[mode] -= taken
        return taken


_READINESS_STATUS = {Readiness.SKIP: NodeStatus.SKIPPED, Readiness.UPSTREAM_FAILED: NodeStatus.UPSTREAM_FAILED}


def node_jobs(queued: Sequence[MovedNode], modes: dict[str, RunMode]) -> list[NodeJob]:
    """The RQ jobs for nodes just queued, grouped by the job id queueing gave each."""
    by_job: dict[str, list[MovedNode]] = defaultdict(list)
    for moved in queued:
        by_job[moved.rq_job_id or single_job_id(moved.id, moved.attempt)].append(moved)
    return [
        NodeJob(job_id, modes.get(nodes[0].node_id, RunMode.EXCLUSIVE), tuple((m.id, m.attempt) for m in nodes))
        for job_id, nodes in by_job.items()
    ]


def advance(
    session: Session,
    dispatcher: Dispatcher,
    execution_id: uuid.UUID,
    workflow_id: uuid.UUID,
    finished: Sequence[Finished],
    *,
    ready: Sequence[ChildState] = (),
    continuation: Continuation | None = None,
) -> tuple[list[NodeJob], Countdown]:
    """Count the finished nodes off their children and settle the children whose rule can
    now be decided, plus `ready` (nodes with nothing to wait for: roots at a start, nodes
    a retry reset); cascade. The jobs to enqueue after commit, and the execution's
    countdown after all of it."""
    jobs: list[NodeJob] = []
    frontier = list(finished)
    to_settle = list(ready)
    causes: dict[str, str] = {}
    guards = _Guards(session, execution_id)
    while frontier or to_settle:
        if frontier:
            counts, causes = _parent_counts(frontier)
            to_settle.extend(node_moves.count_parent_outcomes(session, execution_id, workflow_id, counts))
            frontier = []
        children, to_settle = to_settle, []
        jobs.extend(_settle(session, dispatcher, execution_id, children, causes, frontier, guards, continuation))
    return jobs, node_counts.settle(session, execution_id)


def _parent_counts(frontier: Sequence[Finished]) -> tuple[dict[str, ParentCounts], dict[str, str]]:
    """Per child: how many of its parents are in the frontier and how they ended; and one
    of them to name as the cause (a failed one if any)."""
    counts: dict[str, ParentCounts] = defaultdict(ParentCounts)
    causes: dict[str, str] = {}
    for parent in frontier:
        failed = parent.status in NODE_PARENT_FAILED
        for child in parent.dependents:
            counted = counts[child]
            counted.done += 1
            counted.failed += failed
            counted.skipped += parent.status == NodeStatus.SKIPPED
            if failed or child not in causes:
                causes[child] = parent.node_id
    return counts, causes


class _Guards:
    """Evaluates `when`/`branch` guards, reading the input and outputs only when one needs them."""

    def __init__(self, session: Session, execution_id: uuid.UUID) -> None:
        self.session, self.execution_id = session, execution_id
        self._input: dict[str, Any] | None = None

    def holds(self, child: ChildState) -> tuple[bool, str | None]:
        """(whether the child may run, why not)."""
        if child.condition:
            refs = peer_a.references(child.condition)
            outputs = readable_outputs(self.session, self.execution_id, set(refs)) if refs else {}
            if peer_a.condition_holds(child.condition, outputs, self._execution_input()):
                return True, None
            return False, f"condition is false: {child.condition}"
        if not child.guard:
            return True, None
        try:
            roots = templates.guard_references(child.guard) - {templates.INPUT}
            context = {
                templates.INPUT: self._execution_input(),
                **readable_outputs(self.session, self.execution_id, roots),
            }
            return (True, None) if templates.holds(child.guard, context) else (False, f"guard is false: {child.guard}")
        except templates.TemplateResolutionError as err:
            # A guard on an output that was never made (its node was skipped) does not hold.
            return False, f"guard cannot be evaluated: {err}"

    def _execution_input(self) -> dict[str, Any]:
        if self._input is None:
            self._input = executions_repo.input_of(self.session, self.execution_id)
        return self._input


def _settle(
    session: Session,
    dispatcher: Dispatcher,
    execution_id: uuid.UUID,
    children: Sequence[ChildState],
    causes: dict[str, str],
    frontier: list[Finished],
    guards: _Guards,
    continuation: Continuation | None,
) -> list[NodeJob]:
    runs: list[ChildState] = []
    unrun: dict[tuple[NodeStatus, str | None, bool], list[ChildState]] = defaultdict(list)
    skip_reasons: dict[str, str] = {}
    for child in children:
        if child.status != NodeStatus.PENDING:
            continue  # already settled by an earlier parent, or cancelled
        readiness = decide(
            child.trigger_rule,
            parents=child.parents,
            remaining=child.remaining,
            failed=child.failed_parents,
            skipped=child.skipped_parents,
        )
        if readiness == Readiness.RUN:
            holds, why_not = guards.holds(child)
            if holds:
                runs.append(child)
                continue
            readiness, skip_reasons[child.node_id] = Readiness.SKIP, str(why_not)
        if readiness in _READINESS_STATUS:
            key = (_READINESS_STATUS[readiness], causes.get(child.node_id), child.node_id in skip_reasons)
            unrun[key].append(child)
    jobs = _queue(session, dispatcher, execution_id, runs, continuation)
    for (status, cause, guarded), group in unrun.items():
        _finish_unrun(session, execution_id, group, status, cause, skip_reasons if guarded else {}, frontier)
    return jobs


def _queue(
    session: Session,
    dispatcher: Dispatcher,
    execution_id: uuid.UUID,
    runs: Sequence[ChildState],
    continuation: Continuation | None,
) -> list[NodeJob]:
    """Queue the children that run: the continuing worker's share claimed for it, the rest
    planned into jobs."""
    if not runs:
        return []
    modes = {child.node_id: registry.mode(child.handler) for child in runs}
    kept: list[str] = []
    if continuation is not None:
        by_mode: dict[RunMode, list[str]] = defaultdict(list)
        for node_id, mode in modes.items():
            by_mode[mode].append(node_id)
        for mode, node_ids in by_mode.items():
            kept.extend(node_ids[: continuation.take(mode, dispatcher.share(len(node_ids), mode))])
        if kept:
            continuation.claimed.extend(
                claims.queue_and_claim(session, execution_id, kept, continuation.worker_name, continuation.job_id)
            )
    taken = set(kept)
    others = {node_id: mode for node_id, mode in modes.items() if node_id not in taken}
    if not others:
        return []
    queued = node_moves.queue(
        session, execution_id, list(others), expected=[NodeStatus.PENDING], job_ids=dispatcher.plan(others)
    )
    return node_jobs(queued, others)


def _finish_unrun(
    session: Session,
    execution_id: uuid.UUID,
    group: Sequence[ChildState],
    status: NodeStatus,
    cause: str | None,
    skip_reasons: dict[str, str],
    frontier: list[Finished],
) -> None:
    details: dict[str, Any] = {"because_of": cause} if cause else {}
    if skip_reasons:
        details["reason"] = {child.node_id: skip_reasons[child.node_id] for child in group}
    moved = node_moves.finish(
        session,
        execution_id,
        status,
        node_ids=[child.node_id for child in group],
        expected=[NodeStatus.PENDING],
        error=_upstream_error(cause) if status == NodeStatus.UPSTREAM_FAILED else None,
        details=details or None,
    )
    dependents = {child.node_id: child.dependents for child in group}
    frontier.extend(Finished(m.node_id, dependents[m.node_id], status) for m in moved)


def _upstream_error(parent: str | None) -> dict[str, Any]:
    return {
        "type": "UpstreamFailed",
        "category": "upstream_failed",
        "message": f"did not run: upstream node {parent!r} failed"
        if parent
        else "did not run: an upstream node failed",
        "retryable": False,
    }


def readable_outputs(session: Session, execution_id: uuid.UUID, node_ids: Collection[str]) -> dict[str, Any]:
    """The named nodes' outputs as templates and guards read them: with their handlers'
    output aliases (an HTTP node's `data` for its `body`, say)."""
    found = node_reads.outputs_by_handler(session, execution_id, node_ids)
    return {node_id: registry.readable_output(handler, output) for node_id, (handler, output) in found.items()}
