"""What a handler receives, and what the broker hands out and stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_ID = 2**63 - 1
"""The largest delivery or crash id either engine can store (a signed 64-bit integer)."""


def is_id(value: int) -> bool:
    """Whether `value` can be a delivery or crash id at all (1 to 2**63-1): anything else is
    unknown, and is never handed to a database that would overflow on it."""
    return 0 < value <= MAX_ID


@dataclass(frozen=True, kw_only=True)
class Message:
    """One delivery of a published message to one subscription.

    `id` is stable across redeliveries and subscriptions; `attempt` starts at 1 and grows with
    each delivery of this message to this subscription, so handlers can be idempotent.
    """

    id: str
    topic: str
    subscription: str
    payload: Any
    attributes: dict[str, str]
    published_at: float
    attempt: int
    delivery_id: int


@dataclass(frozen=True, kw_only=True)
class Lease:
    """A delivery pulled by one owner, valid while `token` is still its lease token."""

    message: Message
    token: str
    owner: str
    deadline: float

    @property
    def delivery_id(self) -> int:
        return self.message.delivery_id


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """A stored delivery as the operator sees it (inspect, dead list)."""

    id: int
    message_id: str
    topic: str
    subscription: str
    state: str
    attempt: int
    crashes: int
    suspect: bool
    payload: Any
    attributes: dict[str, str]
    published_at: float
    available_at: float
    last_error: str | None
    dead_reason: str | None
    finished_at: float | None
    crash_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class InFlight:
    """A delivery a worker reported as started: what the supervisor knows when it dies."""

    delivery_id: int
    token: str
    subscription: str
    message_id: str
    started_at: float
    timeout_s: float


@dataclass(frozen=True, kw_only=True)
class CrashRecord:
    """Evidence of one child process death, written by the supervisor."""

    at: float
    work_type: str
    pid: int
    exit_code: int | None
    signal: int | None
    cause: str
    in_flight: list[dict[str, Any]]
    traceback: str
    peak_rss_bytes: int
    log_tail: str
    summary: str
    id: int | None = None


@dataclass(frozen=True, kw_only=True)
class SubscriptionStats:
    name: str
    topic: str
    paused: bool
    backlog: int
    in_flight: int
    oldest_unacked_age_s: float | None
    dead: int
    acked_5m: int
    failed_5m: int
    crashed_5m: int
    acked_1h: int
    failed_1h: int
    crashed_1h: int
    dead_1h: int
