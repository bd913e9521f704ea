"""The worker child's consumer: per subscription, one fetcher thread leases as many deliveries
as it has idle slots and hands them to `concurrency` slot threads.

Responsibilities:
1. pull only for idle slots (nothing is prefetched that could sit behind a slow handler);
2. wake on publish notifications (LISTEN/NOTIFY, or SQLite's data_version), poll as fallback;
3. heartbeat to the supervisor while every fetcher makes progress; extend held leases;
4. on SIGTERM: stop pulling, let in-flight handlers finish within the grace period, release
   the rest without an attempt penalty, exit 0.

The isolation lane is the same consumer with one slot that only takes suspect deliveries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable

from pillbox import defaults
from pillbox.app import App
from pillbox.errors import DatabaseError
from pillbox.forensics import blackbox
from pillbox.forensics.recorder import record_error
from pillbox.messages import Lease
from pillbox.policy import Subscription
from pillbox.protocol import Reporter
from pillbox.worker.executor import Executor, InFlight

log = logging.getLogger("pillbox.worker")

EX_SOFTWARE = 70


class Fetcher:
    """Leases work for one subscription (or, in the lane, for suspects of all of them)."""

    def __init__(self, consumer: Consumer, subs: list[Subscription], slots: int,
                 lane: bool) -> None:
        self.consumer = consumer
        self.subs = {sub.name: sub for sub in subs}
        self.topics = {sub.topic for sub in subs}
        self.slots = slots
        self.lane = lane
        self.free = slots
        self.acks: list[Lease] = []  # finished, to be acked with the next pull
        self.cond = threading.Condition()
        self.wake = threading.Event()
        self.work: queue.Queue[Lease | None] = queue.Queue()
        self.tick = time.monotonic()
        name = "lane" if lane else subs[0].name
        self.thread = threading.Thread(target=self._guarded, name=f"fetch:{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()
        for index in range(self.slots):
            threading.Thread(target=self._slot, name=f"slot:{self.thread.name[6:]}:{index}",
                             daemon=True).start()

    def _guarded(self) -> None:
        try:
            self._loop()
        except BaseException:
            log.exception("consumer loop %s died; exiting so the supervisor restarts this "
                          "process", self.thread.name)
            os._exit(EX_SOFTWARE)

    def _loop(self) -> None:
        consumer = self.consumer
        idle_s = defaults.POLL_INTERVAL_S
        while not consumer.stopping.is_set():
            self.tick = time.monotonic()
            with self.cond:
                if self.free == 0 and not self.acks:
                    self.cond.wait(timeout=0.5)
                    continue
                want, acks, self.acks = self.free, self.acks, []
            if want == 0:
                self._ack(acks)
                continue
            leases = self._pull(want, acks)
            for lease in leases:
                with self.cond:
                    self.free -= 1
                consumer.inflight.add(lease)
                self.work.put(lease)
            if leases:
                idle_s = defaults.POLL_INTERVAL_S
                continue
            self.wake.wait(timeout=idle_s)
            if not self.wake.is_set():
                idle_s = min(defaults.IDLE_POLL_MAX_S, idle_s * 2)
            self.wake.clear()

    def _pull(self, want: int, acks: list[Lease]) -> list[Lease]:
        consumer = self.consumer
        now = time.time()
        try:
            if self.lane:
                if acks:
                    consumer.broker.ack_many(acks, now)
                return consumer.broker.pull_suspect(list(self.subs), consumer.owner,
                                                    defaults.LEASE_S, now)
            (name,) = self.subs
            return consumer.broker.pull(name, consumer.owner, want, defaults.LEASE_S, now,
                                        acks=acks)
        except Exception as exc:  # DatabaseError, or sqlite3/psycopg errors not wrapped
            self._retry_acks(acks)
            consumer.db_trouble(str(exc) if isinstance(exc, DatabaseError)
                                else f"{type(exc).__name__}: {exc}")
            return []

    def _ack(self, acks: list[Lease]) -> None:
        try:
            self.consumer.broker.ack_many(acks, time.time())
        except Exception as exc:
            self._retry_acks(acks)
            self.consumer.db_trouble(f"acking: {exc}")

    def _retry_acks(self, acks: list[Lease]) -> None:
        """Keep acks that could not be written for the next attempt (a lease that expires
        meanwhile is redelivered: at-least-once)."""
        if acks:
            with self.cond:
                self.acks[:0] = acks

    def flush_acks(self) -> None:
        with self.cond:
            acks, self.acks = self.acks, []
        if acks:
            self._ack(acks)

    def _slot(self) -> None:
        consumer = self.consumer
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(consumer.async_error)
        while True:
            lease = self.work.get()
            if lease is None:
                return
            sub = self.subs[lease.message.subscription]
            succeeded = False
            try:
                succeeded = consumer.executor.run(sub, lease, loop)
            except Exception:
                log.exception("delivery %s: could not record its outcome", lease.delivery_id)
            finally:
                with self.cond:
                    if succeeded:
                        self.acks.append(lease)
                    self.free += 1
                    self.cond.notify()

    def drain_unstarted(self) -> list[Lease]:
        """Take back leases queued but not yet started (at shutdown)."""
        taken: list[Lease] = []
        while True:
            try:
                lease = self.work.get_nowait()
            except queue.Empty:
                return taken
            if lease is not None:
                taken.append(lease)


class Consumer:
    """Everything one worker (or lane) child runs."""

    def __init__(self, app: App, reporter: Reporter, lane: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.reporter = reporter
        self.lane = lane
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        subs = list(app.subscriptions.values())
        app.configure_pool(2 + (1 if lane else sum(s.concurrency for s in subs)))
        self.broker = app.broker
        self.inflight = InFlight()
        self.executor = Executor(self.broker, reporter, self.inflight, clock)
        self.stopping = threading.Event()
        self.fetchers = ([Fetcher(self, subs, 1, lane=True)] if lane
                         else [Fetcher(self, [sub], sub.concurrency, lane=False) for sub in subs])
        self._last_db_warning = 0.0
        self.grace_s = float(os.environ.get("PILLBOX_SHUTDOWN_GRACE", defaults.SHUTDOWN_GRACE_S))
        self.stall_timeout_s = float(os.environ.get("PILLBOX_STALL_TIMEOUT",
                                                    defaults.STALL_TIMEOUT_S))

    # -- lifecycle -----------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        self.reporter.send("ready")  # before the first pull: a handler may freeze us at once
        for fetcher in self.fetchers:
            fetcher.start()
        threading.Thread(target=self._waker, name="waker", daemon=True).start()
        self._heartbeat_until_stopped()
        return self._shutdown()

    def _heartbeat_until_stopped(self) -> None:
        last_extend = time.monotonic()
        while not self.stopping.wait(defaults.HEARTBEAT_INTERVAL_S):
            now = time.monotonic()
            if all(f.thread.is_alive() and now - f.tick < self.stall_timeout_s / 2
                   for f in self.fetchers):
                self.reporter.send("hb")
            if now - last_extend > defaults.LEASE_S / 3:
                last_extend = now
                self._extend()

    def _extend(self) -> None:
        tokens = self.inflight.tokens()
        if tokens:
            try:
                self.broker.extend(tokens, time.time() + defaults.LEASE_S)
            except Exception as exc:
                self.db_trouble(f"extending leases: {exc}")

    def _shutdown(self) -> int:
        log.info("stopping: no new work; waiting up to %.0fs for %d in-flight handler(s)",
                 self.grace_s, len(self.inflight))
        unstarted = [lease for f in self.fetchers for lease in f.drain_unstarted()]
        for lease in unstarted:
            self.inflight.remove(lease)
        deadline = time.monotonic() + self.grace_s
        while len(self.inflight) and time.monotonic() < deadline:
            time.sleep(0.05)
        for fetcher in self.fetchers:
            fetcher.flush_acks()
        leftovers = self.inflight.tokens() + [(x.delivery_id, x.token) for x in unstarted]
        if leftovers:
            released = self.broker.release(leftovers, time.time())
            log.info("released %d delivery(ies) without an attempt penalty", released)
        self.reporter.send("bye")
        return 0

    # -- wake-ups ------------------------------------------------------------------------
    def _waker(self) -> None:
        while not self.stopping.is_set():
            try:
                topics = self.broker.wait_for_work(1.0)
            except Exception:
                time.sleep(1.0)
                continue
            for fetcher in self.fetchers:
                if topics is None or fetcher.lane or fetcher.topics & topics:
                    fetcher.wake.set()

    # -- errors outside the ack path -----------------------------------------------------
    def db_trouble(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_db_warning > 10:
            self._last_db_warning = now
            log.error("database trouble, retrying: %s", text.splitlines()[0] if text else "")
        time.sleep(0.5)

    def async_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc = context.get("exception")
        detail = f"{context.get('message', 'asyncio error')}: {exc!r}"
        record_error(self.broker, "async_error", detail, blackbox.current_context())
