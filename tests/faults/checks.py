"""What every fault test checks once the stack has recovered: every execution COMPLETED,
no process left dead, every effect made, none under two keys, and no 5xx but 503."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.faults.stack import Callers, Stack

FINISHED = {"COMPLETED", "FAILED", "CANCELLED"}


@dataclass
class Run:
    """Executions of an effect fan-out, triggered and under way when the fault strikes."""

    stack: Stack
    calls: int
    execution_ids: list[str]

    @classmethod
    def start(cls, stack: Stack, executions: int = 3, calls: int = 30, ms: int = 1500) -> Run:
        workflow = stack.effect_fanout(calls, ms)
        run = cls(stack, calls, [stack.trigger(workflow) for _ in range(executions)])
        stack.wait(lambda: stack.effects.in_flight >= 10, 30, "effects in flight")
        return run

    def expected_keys(self) -> set[str]:
        return {f"{e}:call-{i}" for e in self.execution_ids for i in range(self.calls)}


def through(stack: Stack, fault: Callable[[], None], *, executions: int = 3) -> tuple[Run, Callers, float]:
    """Start a run and clients, strike, and wait for every execution to finish; the run,
    the clients, and the seconds from the fault's end to the last execution's end."""
    run = Run.start(stack, executions)
    callers = Callers(stack, stack.define([{"id": "a", "handler": "noop"}]))
    callers.start()
    time.sleep(0.5)
    fault()
    ended = time.monotonic()
    time.sleep(1)
    callers.stop()
    every = run.execution_ids + callers.triggered
    try:
        stack.wait(lambda: all(stack.status(e) in FINISHED for e in every), 60, "every execution to finish")
    except AssertionError as err:
        unfinished = {e: stack.call("GET", f"/api/v1/executions/{e}?nodes_limit=0")[1] for e in every}
        unfinished = {e: (b["status"], b["progress"]) for e, b in unfinished.items() if b["status"] not in FINISHED}
        raise AssertionError(f"{err}: {unfinished}") from err
    return run, callers, time.monotonic() - ended


def assert_recovered(stack: Stack, run: Run, callers: Callers, *, resent_allowed: bool = False) -> None:
    every = run.execution_ids + callers.triggered
    assert {e: stack.status(e) for e in every} == dict.fromkeys(every, "COMPLETED")
    assert stack.dead() == [], f"dead: {stack.dead()}; logs in {stack.base}"
    calls = stack.effects.snapshot()
    made = {key for key in calls if key.split(":")[0] in run.execution_ids}
    assert made == run.expected_keys()  # every effect made (0 lost), each under one key (0 under two)
    if not resent_allowed:
        assert {key: calls[key] for key in made if calls[key] != 1} == {}  # not even sent twice
    assert set(callers.statuses) <= {200, 201, 503}, callers.statuses
    assert callers.statuses[200] + callers.statuses[201] > 0


def report(fault: str, stack: Stack, run: Run, callers: Callers, recovered: float) -> None:
    """A line for docs/RELIABILITY.md (`make chaos` prints them)."""
    calls = stack.effects.snapshot()
    sent = sum(calls[key] for key in run.expected_keys())
    answers = ", ".join(f"{n} x {status}" for status, n in sorted(callers.statuses.items()))
    print(
        f"\nFAULT {fault}: every execution done {recovered:.1f} s after; {len(run.expected_keys())} effects, "
        f"{sent} calls; clients got {answers}"
    )
