"""A worker killed mid-node (kill -9, an OOM kill), on a stack of its own (the fault tests'
modules run side by side): its nodes run again within 10 s under the same keys, every
execution completes, and the clients calling meanwhile see no 5xx."""

from __future__ import annotations

import time

from tests.faults.checks import assert_recovered, report, through
from tests.faults.stack import Stack


def test_a_worker_killed_mid_node_has_its_nodes_run_again_within_10_s_under_the_same_keys(stack: Stack) -> None:
    killed_at: list[float] = []

    def kill_a_worker() -> None:
        killed_at.append(time.monotonic())
        stack.kill("worker-1")
        stack.restart("worker-1")  # as its supervisor would

    run, callers, recovered = through(stack, kill_a_worker)
    assert_recovered(stack, run, callers, resent_allowed=True)
    arrivals = stack.effects.arrivals
    resent = [key for key in run.expected_keys() if len(arrivals[key]) > 1]
    assert resent, "the killed worker held calls in flight: they must have been made again"
    # Loss is noticed by heartbeat (WORKER_LOST_SECONDS 6, beats every 2 s), not after 30 s.
    assert max(arrivals[key][1] - killed_at[0] for key in resent) < 10
    execution_id, node_id = resent[0].split(":")
    _, logs = stack.call("GET", f"/api/v1/executions/{execution_id}/logs?node_id={node_id}&limit=1000")
    retried = [row for row in logs["items"] if row["event"] == "node.up_for_retry"]
    assert [row["details"]["error"]["category"] for row in retried] == ["worker_lost"]  # the death, nothing else
    again = max(arrivals[key][1] - killed_at[0] for key in resent)
    report(f"kill -9 worker ({len(resent)} calls in flight made again, the last {again:.1f} s after)", stack, run,
           callers, recovered)  # fmt: skip
