"""The failure shapes a drill can replay against the example app's welcome handler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    org_settings: dict[str, Any]
    crashes: bool  # True: the poison must be quarantined; False: only recorded
    cause: str | None = None
    quarantine_within_s: float | None = None


GOOD_TEMPLATE = "Welcome {user}! You joined {incident}."

SCENARIOS = {
    s.name: s
    for s in (
        Scenario("poison-pill", "an org without a welcome template: the welcome handler "
                 "segfaults in native code (the original outage)", {}, True, "segfault", 10.0),
        Scenario("abort", "the welcome handler calls abort()",
                 {"welcome_template": GOOD_TEMPLATE, "drill_fault": "abort"}, True, "abort",
                 10.0),
        Scenario("hang", "the welcome handler sleeps forever (timeout 3 s)",
                 {"welcome_template": GOOD_TEMPLATE, "drill_fault": "hang"}, True, "timeout"),
        Scenario("memory-bomb", "the welcome handler allocates without bound "
                 "(memory_limit 300MB)",
                 {"welcome_template": GOOD_TEMPLATE, "drill_fault": "memory-bomb"}, True,
                 "memory"),
        Scenario("thread-exception", "a library thread dies inside the welcome handler",
                 {"welcome_template": GOOD_TEMPLATE, "drill_fault": "thread-exception"}, False),
    )
}
