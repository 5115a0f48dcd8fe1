"""Each execution's nodes by status (`executions.node_counts`), kept in the transaction
that moves them.

Every statement that moves nodes notes its moves here, per execution; they reach the
execution row once per transaction: through `settle` where the caller needs the counts
(the countdown that ends an execution), and otherwise just before commit (`install`).
A transaction that moves an execution's nodes holds that execution's row lock from its
start (the global lock order), so this write waits on no one.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from app.domain.states import NODE_FAILURES, NODE_UNFINISHED, ExecutionStatus, NodeStatus
from app.repositories.prepared import Prepared

_NOTED = "stepwise.node_moves"
_LOCKED = "stepwise.locked_counts"


@dataclass(frozen=True)
class Countdown:
    """An execution's state and what is left of it, as of this transaction."""

    status: ExecutionStatus
    counts: dict[str, int]

    @property
    def unfinished(self) -> int:
        return sum(self.counts.get(str(s), 0) for s in NODE_UNFINISHED)

    @property
    def failures(self) -> int:
        return sum(self.counts.get(str(s), 0) for s in NODE_FAILURES)


def initial(node_count: int) -> dict[str, int]:
    """The counts of an execution whose nodes were all just made PENDING."""
    return {str(s): (node_count if s == NodeStatus.PENDING else 0) for s in NodeStatus}


def note(session: Session, execution_id: uuid.UUID, moves: Iterable[tuple[str, str]]) -> None:
    """Record moves (from, to) of this execution's nodes, to be written before commit."""
    tally: Counter[str] = session.info.setdefault(_NOTED, {}).setdefault(execution_id, Counter())
    for previous, target in moves:
        tally[previous] -= 1
        tally[target] += 1


# Adds each execution's noted moves to its counts; one statement for every execution.
_ADD = Prepared(
    "add_node_counts",
    """
    UPDATE executions e
    SET node_counts = (
            SELECT jsonb_object_agg(key, total) FROM (
                SELECT key, sum(value::int) AS total FROM (
                    SELECT key, value FROM jsonb_each_text(e.node_counts)
                    UNION ALL
                    SELECT key, value FROM jsonb_each_text(d.delta)
                ) parts GROUP BY key
            ) sums),
        updated_at = now()
    FROM unnest(:ids, CAST(:deltas AS jsonb[])) AS d(id, delta)
    WHERE e.id = d.id
    RETURNING e.id, e.status, e.node_counts
    """,
    [("ids", "uuid[]"), ("deltas", "text[]")],
)
_READ = Prepared("read_node_counts", "SELECT id, status, node_counts FROM executions WHERE id = :id", [("id", "uuid")])


def remember(session: Session, execution_id: uuid.UUID, status: ExecutionStatus, counts: dict[str, int]) -> None:
    """The execution as read under its row lock, held until this transaction ends: no one
    else can move it or its nodes meanwhile, so its state (which only the caller may then
    change, by ending it) and its counts plus the noted moves are exact."""
    session.info.setdefault(_LOCKED, {})[execution_id] = (status, counts)


def _write(session: Session, tallies: dict[uuid.UUID, Counter[str]]) -> dict[uuid.UUID, Countdown]:
    changed = {eid: {k: v for k, v in tally.items() if v} for eid, tally in tallies.items()}
    changed = {eid: delta for eid, delta in changed.items() if delta}
    if not changed:
        return {}
    ids = sorted(changed)  # the rows are locked already; the order is for the reader
    rows = _ADD.execute(session, {"ids": ids, "deltas": [json.dumps(changed[i]) for i in ids]})
    return {row.id: Countdown(ExecutionStatus(row.status), row.node_counts) for row in rows}


def settle(session: Session, execution_id: uuid.UUID) -> Countdown:
    """The execution's state and counts after the moves noted so far. When its counts were
    remembered under its lock this is arithmetic here (the moves reach the row at commit);
    otherwise they are written now and the row read back."""
    remembered = session.info.get(_LOCKED, {}).get(execution_id)
    if remembered is not None:
        status, counts = remembered
        tally = session.info.get(_NOTED, {}).get(execution_id, Counter())
        return Countdown(status, {key: counts.get(key, 0) + tally.get(key, 0) for key in {*counts, *tally}})
    tally = session.info.get(_NOTED, {}).pop(execution_id, None)
    written = _write(session, {execution_id: tally}) if tally else {}
    if execution_id in written:
        return written[execution_id]
    row = _READ.execute(session, {"id": execution_id}).one()
    return Countdown(ExecutionStatus(row.status), row.node_counts)


def settle_all(session: Session) -> None:
    """Write every noted move (before commit)."""
    tallies = session.info.pop(_NOTED, None)
    if tallies:
        _write(session, tallies)


def install(sessions: sessionmaker[Session]) -> None:
    """Write the noted moves of each transaction just before it commits; forget them if it
    rolls back."""

    @event.listens_for(sessions, "before_commit")
    def _before_commit(session: Session) -> None:
        settle_all(session)

    @event.listens_for(sessions, "after_commit")
    def _committed(session: Session) -> None:
        session.info.pop(_LOCKED, None)

    @event.listens_for(sessions, "after_rollback")
    def _rolled_back(session: Session) -> None:
        session.info.pop(_NOTED, None)
        session.info.pop(_LOCKED, None)
