"""Restart policy: pure decisions that take `now` and never read a clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from pillbox import defaults


@dataclass
class RestartTracker:
    """First restart immediate; consecutive crashes back off exponentially to a cap of seconds;
    a child that stayed up `healthy_s` starts over.

    A crash that had handlers running is blamed on their messages (charged, or made suspects
    for the isolation lane), which bounds how often it can recur: such a crash restarts at
    once and does not count. Backing it off would only hold the innocent messages back, and
    the lane, whose job is to crash on each poison message, would drain suspects at one per
    backoff."""

    first_s: float = defaults.RESTART_BACKOFF_FIRST_S
    max_s: float = defaults.RESTART_BACKOFF_MAX_S
    healthy_s: float = defaults.RESTART_HEALTHY_S
    consecutive: int = 0

    def on_exit(self, started_at: float, now: float, blamed_on_messages: bool = False) -> float:
        """Record a death; returns the delay before the restart."""
        if blamed_on_messages:
            return 0.0
        if now - started_at >= self.healthy_s:
            self.consecutive = 0
        self.consecutive += 1
        if self.consecutive == 1:
            return 0.0
        return float(min(self.max_s, self.first_s * 2 ** (self.consecutive - 2)))


@dataclass
class CrashLoopDetector:
    """Raises one alarm when a work type crashes `threshold` times within `window_s`, then
    stays quiet until the window is clear again."""

    threshold: int = defaults.CRASH_LOOP_CRASHES
    window_s: float = defaults.CRASH_LOOP_WINDOW_S
    times: list[float] = field(default_factory=list)
    alarmed: bool = False

    def on_crash(self, now: float) -> bool:
        self.times = [t for t in self.times if now - t < self.window_s] + [now]
        if len(self.times) >= self.threshold and not self.alarmed:
            self.alarmed = True
            return True
        if len(self.times) == 1:
            self.alarmed = False
        return False
