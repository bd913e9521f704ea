"""The cron child: turns due ticks into messages on each cron's internal subscription.

Each tick is claimed by a unique (cron, tick) row in the same transaction that publishes its
message, so however many cron processes or machines run, a tick runs once. The run itself is
an ordinary delivery: timeouts, retries, crash attribution and quarantine apply.

Overlap (overlap=False, the default): while a previous run of the cron is unfinished (waiting,
running, or waiting for a retry), a due tick is skipped: claimed and recorded without a run.
With catch_up="all" it is not skipped but deferred: claimed once the previous run finished,
so "all" never drops a tick and never runs two at once.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pillbox import defaults
from pillbox.app import App
from pillbox.cron import Cron, due_ticks, next_tick
from pillbox.protocol import Reporter

log = logging.getLogger("pillbox.cron")

CATCH_UP_NONE_GRACE = timedelta(seconds=5)
MAX_SLEEP_S = 1.0

CLAIMED, SKIPPED, DEFERRED, TAKEN = "claimed", "skipped", "deferred", "taken"


class Scheduler:
    def __init__(self, app: App, reporter: Reporter,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.app = app
        self.reporter = reporter
        self.clock = clock
        self.started = clock()
        self.stopping = threading.Event()
        app.configure_pool(2)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        self.reporter.send("ready")
        while not self.stopping.is_set():
            self.reporter.send("hb")
            try:
                self.run_due()
                sleep_s = self._sleep_s()
            except Exception as exc:
                log.error("scheduling failed, retrying: %s", exc)
                sleep_s = MAX_SLEEP_S
            self.stopping.wait(sleep_s)
        return 0

    def run_due(self) -> list[tuple[str, datetime]]:
        """Claim and publish every due tick; returns the ticks this process published."""
        now = self.clock()
        claimed = []
        for cron in self.app.crons.values():
            for tick in self._due(cron, now):
                outcome = self._claim(cron, tick)
                if outcome == CLAIMED:
                    claimed.append((cron.name, tick))
                elif outcome == DEFERRED:
                    break  # later ticks wait behind this one
        return claimed

    def _due(self, cron: Cron, now: datetime) -> list[datetime]:
        last_ts = self.app.broker.last_tick(cron.name)
        last = datetime.fromtimestamp(last_ts, UTC) if last_ts is not None else None
        return due_ticks(cron, last, self.started, now, CATCH_UP_NONE_GRACE)

    def _claim(self, cron: Cron, tick: datetime) -> str:
        broker = self.app.broker
        busy = not cron.overlap and broker.unfinished(cron.subscription) > 0
        if busy and cron.catch_up == "all":
            return DEFERRED
        payload = json.dumps({"cron": cron.name, "tick": tick.isoformat()})
        message_id = broker.claim_tick(cron.name, tick.timestamp(), cron.topic, payload,
                                       time.time(), publish=not busy)
        if message_id is None:
            return TAKEN  # another cron process claimed it first
        if busy:
            log.warning("cron %s: tick %s skipped, the previous run is still in flight "
                        "(overlap=False)", cron.name, tick.isoformat())
            return SKIPPED
        return CLAIMED

    def _sleep_s(self) -> float:
        now = self.clock()
        upcoming = [next_tick(c.schedule, c.tz, now) for c in self.app.crons.values()]
        if not upcoming:
            return MAX_SLEEP_S
        wait = (min(upcoming) - now).total_seconds()
        return max(0.01, min(MAX_SLEEP_S, wait, defaults.HEARTBEAT_INTERVAL_S))
