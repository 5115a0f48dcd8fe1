"""Retry policies: how many attempts a node gets, and how long each retry waits."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

# Bounds for any policy, whoever sets it.
MAX_ATTEMPTS = 100
MAX_BACKOFF_SECONDS = 24 * 3600


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `max_attempts` attempts in all; before attempt n+1 wait a random time in
    [0, min(max_backoff, backoff * 2**(n-1))] ("full jitter"), unless the failure
    asked for a delay of its own (`retry_after`), which is honoured as given."""

    max_attempts: int = 3
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0

    def overridden(self, overrides: Mapping[str, Any] | None) -> RetryPolicy:
        """This policy with the fields a node sets replaced."""
        if not overrides:
            return self
        known = {k: v for k, v in overrides.items() if k in ("max_attempts", "backoff_seconds", "max_backoff_seconds")}
        return replace(self, **known)

    def should_retry(self, attempt: int, retryable: bool) -> bool:
        """Whether a failure of `attempt` (1-based) gets another attempt."""
        return retryable and attempt < self.max_attempts

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before the attempt after `attempt`."""
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), MAX_BACKOFF_SECONDS)
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** max(attempt - 1, 0))
        return (rng or random).uniform(0, ceiling)


def policy_problems(overrides: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each out-of-bounds value of a node's retry settings."""
    problems = []
    attempts = overrides.get("max_attempts")
    if attempts is not None and not (isinstance(attempts, int) and 1 <= attempts <= MAX_ATTEMPTS):
        problems.append(("retry.max_attempts", f"must be a whole number from 1 to {MAX_ATTEMPTS}"))
    for name in ("backoff_seconds", "max_backoff_seconds"):
        value = overrides.get(name)
        if value is not None and not (isinstance(value, int | float) and 0 <= value <= MAX_BACKOFF_SECONDS):
            problems.append((f"retry.{name}", f"must be from 0 to {MAX_BACKOFF_SECONDS} seconds"))
    return problems


# Automatic retries of a whole execution (the trigger's max_retries): longer waits
# than a node's, since everything that failed runs again.
EXECUTION_RETRY = RetryPolicy(max_attempts=MAX_ATTEMPTS, backoff_seconds=5.0, max_backoff_seconds=300.0)
