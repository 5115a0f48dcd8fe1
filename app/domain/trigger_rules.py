"""When a node may run, given how its parents finished: Airflow's trigger rules.

A node's parents are counted as they finish: `remaining` not finished yet,
`failed` (FAILED or UPSTREAM_FAILED), `skipped`, and the rest succeeded. A rule
is settled as early as the counts allow (all_success fails upstream at the
first failed parent; one_success runs at the first success) and otherwise waits.
"""

from __future__ import annotations

from enum import StrEnum


class Readiness(StrEnum):
    WAIT = "WAIT"  # not decidable yet: parents still running
    RUN = "RUN"
    SKIP = "SKIP"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"


class TriggerRule(StrEnum):
    ALL_SUCCESS = "all_success"  # every parent succeeded (the default)
    ALL_FAILED = "all_failed"  # every parent failed
    ALL_DONE = "all_done"  # every parent finished, however ("run the cleanup anyway")
    ONE_SUCCESS = "one_success"  # at least one parent succeeded; runs at the first
    ONE_FAILED = "one_failed"  # at least one parent failed; runs at the first
    NONE_FAILED = "none_failed"  # no parent failed (skipped ones are fine)
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"  # and at least one succeeded (joins after branches)
    NONE_SKIPPED = "none_skipped"  # no parent was skipped


R = Readiness


def decide(rule: TriggerRule | str, *, parents: int, remaining: int, failed: int, skipped: int) -> Readiness:
    """The node's fate from its parents' counts; WAIT until the rule can be settled.
    A node without parents runs, whatever its rule (as in Airflow)."""
    if parents == 0:
        return R.RUN
    succeeded = parents - remaining - failed - skipped
    done = remaining == 0
    match TriggerRule(rule):
        case TriggerRule.ALL_SUCCESS:
            return R.UPSTREAM_FAILED if failed else R.WAIT if not done else R.SKIP if skipped else R.RUN
        case TriggerRule.ALL_FAILED:
            return R.SKIP if succeeded or skipped else R.WAIT if not done else R.RUN
        case TriggerRule.ALL_DONE:
            return R.RUN if done else R.WAIT
        case TriggerRule.ONE_SUCCESS:
            if succeeded:
                return R.RUN
            return R.WAIT if not done else R.UPSTREAM_FAILED if failed else R.SKIP
        case TriggerRule.ONE_FAILED:
            return R.RUN if failed else R.WAIT if not done else R.SKIP
        case TriggerRule.NONE_FAILED:
            return R.UPSTREAM_FAILED if failed else R.RUN if done else R.WAIT
        case TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS:
            if failed:
                return R.UPSTREAM_FAILED
            return R.WAIT if not done else R.RUN if succeeded else R.SKIP
        case TriggerRule.NONE_SKIPPED:
            return R.SKIP if skipped else R.RUN if done else R.WAIT
