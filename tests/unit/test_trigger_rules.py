"""Airflow's trigger rules, case by case."""

from __future__ import annotations

import pytest

from app.domain.trigger_rules import Readiness as R
from app.domain.trigger_rules import TriggerRule as T
from app.domain.trigger_rules import decide


def fate(rule: T, *, ok: int = 0, failed: int = 0, skipped: int = 0, running: int = 0) -> R:
    return decide(rule, parents=ok + failed + skipped + running, remaining=running, failed=failed, skipped=skipped)


@pytest.mark.parametrize(
    "rule,counts,expected",
    [
        (T.ALL_SUCCESS, {"ok": 2}, R.RUN),
        (T.ALL_SUCCESS, {"ok": 1, "running": 1}, R.WAIT),
        (T.ALL_SUCCESS, {"failed": 1, "running": 1}, R.UPSTREAM_FAILED),  # settled at the first failure
        (T.ALL_SUCCESS, {"ok": 1, "skipped": 1}, R.SKIP),
        (T.ALL_FAILED, {"failed": 2}, R.RUN),
        (T.ALL_FAILED, {"failed": 1, "running": 1}, R.WAIT),
        (T.ALL_FAILED, {"failed": 1, "ok": 1}, R.SKIP),
        (T.ALL_FAILED, {"failed": 1, "skipped": 1}, R.SKIP),
        (T.ALL_DONE, {"ok": 1, "failed": 1, "skipped": 1}, R.RUN),
        (T.ALL_DONE, {"failed": 1, "running": 1}, R.WAIT),
        (T.ONE_SUCCESS, {"ok": 1, "running": 3}, R.RUN),  # runs at the first success
        (T.ONE_SUCCESS, {"failed": 1, "running": 1}, R.WAIT),
        (T.ONE_SUCCESS, {"failed": 1, "skipped": 1}, R.UPSTREAM_FAILED),
        (T.ONE_SUCCESS, {"skipped": 2}, R.SKIP),
        (T.ONE_FAILED, {"failed": 1, "running": 2}, R.RUN),
        (T.ONE_FAILED, {"ok": 2}, R.SKIP),
        (T.ONE_FAILED, {"ok": 1, "running": 1}, R.WAIT),
        (T.NONE_FAILED, {"ok": 1, "skipped": 1}, R.RUN),
        (T.NONE_FAILED, {"ok": 1, "failed": 1}, R.UPSTREAM_FAILED),
        (T.NONE_FAILED, {"skipped": 2}, R.RUN),
        (T.NONE_FAILED_MIN_ONE_SUCCESS, {"ok": 1, "skipped": 1}, R.RUN),
        (T.NONE_FAILED_MIN_ONE_SUCCESS, {"skipped": 2}, R.SKIP),
        (T.NONE_FAILED_MIN_ONE_SUCCESS, {"failed": 1, "running": 1}, R.UPSTREAM_FAILED),
        (T.NONE_FAILED_MIN_ONE_SUCCESS, {"ok": 1, "running": 1}, R.WAIT),
        (T.NONE_SKIPPED, {"ok": 1, "failed": 1}, R.RUN),
        (T.NONE_SKIPPED, {"skipped": 1, "running": 1}, R.SKIP),
        (T.NONE_SKIPPED, {"ok": 1, "running": 1}, R.WAIT),
    ],
)
def test_rule(rule: T, counts: dict[str, int], expected: R) -> None:
    assert fate(rule, **counts) == expected


@pytest.mark.parametrize("rule", list(T))
def test_a_root_runs_whatever_its_rule(rule: T) -> None:
    assert fate(rule) == R.RUN


@pytest.mark.parametrize("rule", list(T))
def test_every_rule_settles_once_all_parents_are_done(rule: T) -> None:
    for ok in range(3):
        for failed in range(3):
            for skipped in range(3):
                assert fate(rule, ok=ok, failed=failed, skipped=skipped) != R.WAIT
