"""Retry decisions after a handler exception: pure functions of attempt, policy and now."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryDecision:
    retry_at: float | None
    """When to deliver again; None means the delivery is dead (attempts exhausted)."""


def backoff_s(attempt: int, min_s: float, max_s: float, jitter: float) -> float:
    """min_s * 2**(attempt-1), capped at max_s, scaled by a jitter factor in [0.5, 1]."""
    base = min(max_s, min_s * 2.0 ** max(0, attempt - 1))
    return base * (0.5 + 0.5 * jitter)


def decide(
    attempt: int,
    max_attempts: int,
    min_backoff_s: float,
    max_backoff_s: float,
    now: float,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Retry after backoff while attempts remain, else dead."""
    if attempt >= max_attempts:
        return RetryDecision(retry_at=None)
    jitter = (rng or random).random()
    return RetryDecision(retry_at=now + backoff_s(attempt, min_backoff_s, max_backoff_s, jitter))
