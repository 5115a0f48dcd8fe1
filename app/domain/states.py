"""The execution and node state machines: one table each, and nothing else.

Repositories turn a transition into a guarded UPDATE whose WHERE clause lists
the source states this table allows, so the table is the single authority on
what may move where.
"""

from __future__ import annotations

from enum import StrEnum


class WorkflowStatus(StrEnum):
    DRAFT = "draft"  # being edited; cannot run
    ACTIVE = "active"  # frozen; runs
    ARCHIVED = "archived"  # frozen; no new runs, existing ones finish


class ExecutionStatus(StrEnum):
    PENDING = "PENDING"  # created; waits for its start (now, or its scheduled time)
    RUNNING = "RUNNING"  # nodes are being dispatched and run
    COMPLETED = "COMPLETED"  # every node finished and none failed
    FAILED = "FAILED"  # nothing left to run and at least one node failed
    RETRYING = "RETRYING"  # failed nodes are being reset for another attempt
    CANCELLED = "CANCELLED"  # stopped by a user; final, nothing changes it


class NodeStatus(StrEnum):
    PENDING = "PENDING"  # waits for its parents
    QUEUED = "QUEUED"  # ready; an RQ job exists (or is about to, after commit)
    RUNNING = "RUNNING"  # claimed by a worker
    UP_FOR_RETRY = "UP_FOR_RETRY"  # an attempt failed; the next waits in PostgreSQL until not_before
    DEFERRED = "DEFERRED"  # its handler asked to wait (a `delay`): holds no worker until not_before
    COMPLETED = "COMPLETED"  # the handler returned an output
    FAILED = "FAILED"  # the handler failed for good
    SKIPPED = "SKIPPED"  # its guard or trigger rule said not to run
    UPSTREAM_FAILED = "UPSTREAM_FAILED"  # a parent failed and its trigger rule cannot be met
    CANCELLED = "CANCELLED"  # its execution was cancelled before it finished


WORKFLOW_TRANSITIONS: dict[WorkflowStatus, frozenset[WorkflowStatus]] = {
    WorkflowStatus.DRAFT: frozenset({WorkflowStatus.ACTIVE, WorkflowStatus.ARCHIVED}),
    WorkflowStatus.ACTIVE: frozenset({WorkflowStatus.ARCHIVED}),
    WorkflowStatus.ARCHIVED: frozenset(),
}

EXECUTION_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    ExecutionStatus.PENDING: frozenset({ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED}),
    ExecutionStatus.RUNNING: frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}),
    ExecutionStatus.FAILED: frozenset({ExecutionStatus.RETRYING}),
    ExecutionStatus.RETRYING: frozenset({ExecutionStatus.RUNNING, ExecutionStatus.CANCELLED}),
    ExecutionStatus.COMPLETED: frozenset(),
    ExecutionStatus.CANCELLED: frozenset(),
}

NODE_TRANSITIONS: dict[NodeStatus, frozenset[NodeStatus]] = {
    NodeStatus.PENDING: frozenset(
        {
            NodeStatus.QUEUED,
            NodeStatus.SKIPPED,
            NodeStatus.UPSTREAM_FAILED,
            NodeStatus.CANCELLED,
        }
    ),
    NodeStatus.QUEUED: frozenset({NodeStatus.RUNNING, NodeStatus.CANCELLED}),
    NodeStatus.RUNNING: frozenset(
        {
            NodeStatus.COMPLETED,
            NodeStatus.FAILED,
            NodeStatus.UP_FOR_RETRY,
            NodeStatus.DEFERRED,
            NodeStatus.SKIPPED,
            NodeStatus.CANCELLED,
        }
    ),
    NodeStatus.UP_FOR_RETRY: frozenset({NodeStatus.QUEUED, NodeStatus.CANCELLED}),
    NodeStatus.DEFERRED: frozenset({NodeStatus.QUEUED, NodeStatus.CANCELLED}),
    # Retrying an execution puts its failed nodes back to PENDING for a new
    # attempt; CANCELLED ones too, for a FAILED execution that hit its deadline.
    NodeStatus.FAILED: frozenset({NodeStatus.PENDING}),
    NodeStatus.UPSTREAM_FAILED: frozenset({NodeStatus.PENDING}),
    NodeStatus.CANCELLED: frozenset({NodeStatus.PENDING}),
    NodeStatus.COMPLETED: frozenset(),
    NodeStatus.SKIPPED: frozenset(),
}

# "Finished": nothing more will happen to it unless a user asks (retry).
EXECUTION_FINISHED = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})
# What a retry of the execution accepts: a failed one, or one waiting for its automatic retry.
EXECUTION_RETRYABLE = frozenset({ExecutionStatus.FAILED, ExecutionStatus.RETRYING})
# What a dead letter's retry accepts: those, and a running one (a branch failed, others run on).
EXECUTION_RESUMABLE = EXECUTION_RETRYABLE | {ExecutionStatus.RUNNING}
# What the peers' trigger starts (PENDING) or reruns (FAILED): new work, which admission may refuse.
EXECUTION_STARTABLE = frozenset({ExecutionStatus.PENDING, ExecutionStatus.FAILED})
NODE_FINISHED = frozenset(
    {
        NodeStatus.COMPLETED,
        NodeStatus.FAILED,
        NodeStatus.SKIPPED,
        NodeStatus.UPSTREAM_FAILED,
        NodeStatus.CANCELLED,
    }
)
# Not finished: what a cancel or a deadline stops.
NODE_UNFINISHED = frozenset(NodeStatus) - NODE_FINISHED
# Waiting in PostgreSQL for not_before; the scheduler queues them then.
NODE_WAITING = frozenset({NodeStatus.UP_FOR_RETRY, NodeStatus.DEFERRED})
# What an execution retry runs again (completed and skipped nodes keep their outcome).
NODE_RERUNNABLE = frozenset({NodeStatus.FAILED, NodeStatus.UPSTREAM_FAILED, NodeStatus.CANCELLED})
# A parent that ended so, for its children's trigger rules, failed.
NODE_PARENT_FAILED = frozenset({NodeStatus.FAILED, NodeStatus.UPSTREAM_FAILED})
# Nodes that make their execution end FAILED rather than COMPLETED. A CANCELLED node in an
# execution that is not itself cancelled was stopped by its deadline.
NODE_FAILURES = frozenset({NodeStatus.FAILED, NodeStatus.CANCELLED})


def workflow_sources(target: WorkflowStatus) -> frozenset[WorkflowStatus]:
    """Every status a workflow may move to `target` from."""
    return frozenset(s for s, targets in WORKFLOW_TRANSITIONS.items() if target in targets)


def execution_sources(target: ExecutionStatus) -> frozenset[ExecutionStatus]:
    """Every status an execution may move to `target` from."""
    return frozenset(s for s, targets in EXECUTION_TRANSITIONS.items() if target in targets)


def node_sources(target: NodeStatus) -> frozenset[NodeStatus]:
    """Every status a node may move to `target` from."""
    return frozenset(s for s, targets in NODE_TRANSITIONS.items() if target in targets)


def values(statuses: frozenset[NodeStatus] | frozenset[ExecutionStatus]) -> list[str]:
    """A set of states as SQL parameters, in a stable order."""
    return sorted(str(s) for s in statuses)
