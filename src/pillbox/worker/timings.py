"""Handler durations of one worker process, kept as Prometheus histogram buckets and added
to the database every few seconds, so a scrape of any web process sees every worker's.

What a worker has not flushed yet when it is killed is lost (at most one flush interval of
observations); a handler that crashes its process is not observed at all: its crash record
holds what is known of it.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Sequence

#: Upper bounds in seconds: Prometheus' defaults, plus the long tail handlers can have.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                              5.0, 7.5, 10.0, 30.0, 60.0, 300.0, math.inf)
#: The bounds as the exposition writes them (the `le` label).
LABELS: tuple[str, ...] = tuple("+Inf" if math.isinf(b) else repr(b) for b in BUCKETS)


class Timings:
    """Thread-safe; `observe` from handler threads, `take` from the flusher."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], list[float]] = {}  # -> [observations, seconds]

    def observe(self, subscription: str, seconds: float) -> None:
        index = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            slot = self._pending.setdefault((subscription, index), [0, 0.0])
            slot[0] += 1
            slot[1] += seconds

    def take(self) -> list[tuple[str, str, int, float]]:
        """(subscription, le, observations, seconds) observed since the last take."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [(sub, LABELS[index], int(n), seconds)
                for (sub, index), (n, seconds) in sorted(pending.items())]

    def give_back(self, taken: Sequence[tuple[str, str, int, float]]) -> None:
        """Keep observations that could not be written for the next flush."""
        index_of = {label: index for index, label in enumerate(LABELS)}
        with self._lock:
            for sub, le, n, seconds in taken:
                slot = self._pending.setdefault((sub, index_of[le]), [0, 0.0])
                slot[0] += n
                slot[1] += seconds
