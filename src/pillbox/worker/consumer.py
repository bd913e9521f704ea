"""The worker child's consumer: per subscription, one fetcher thread leases as many deliveries
as it has idle slots and hands them to `concurrency` slot threads.

Responsibilities:
1. keep the slots busy; lease ahead only while handlers are fast (about PREFETCH_WINDOW_S of
   work), and give back at once what waits behind a handler that turned out slow;
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
from pillbox.worker.timings import Timings

log = logging.getLogger("pillbox.worker")

EX_SOFTWARE = 70


class Fetcher:
    """Leases work for one subscription (or, in the lane, for suspects of all of them).

    It keeps its `slots` busy and, while recent handlers were fast, leases a little ahead
    (about PREFETCH_WINDOW_S of work) so that one statement acks a batch and leases the next.
    Slow handlers get no lease-ahead, and leases stranded behind a handler that turned out
    slow are given back at once. Only started deliveries ever count in a crash: the rest of
    what a dead worker held is released.
    """

    def __init__(self, consumer: Consumer, subs: list[Subscription], slots: int,
                 lane: bool) -> None:
        self.consumer = consumer
        self.subs = {sub.name: sub for sub in subs}
        self.topics = {sub.topic for sub in subs}
        self.slots = slots
        self.lane = lane
        self.outstanding = 0  # leased and not finished: queued + running
        self.queued = 0
        self.running: dict[int, float] = {}  # slot -> monotonic start of its handler
        self.handler_s: float | None = None  # moving average of a handler's wall time
        self.acks: list[Lease] = []  # finished, to be acked with the next pull
        self.acks_since = 0.0
        self.cond = threading.Condition()
        self.wake = threading.Event()
        self.work: queue.Queue[Lease | None] = queue.Queue()
        self.tick = time.monotonic()
        name = "lane" if lane else subs[0].name
        self.thread = threading.Thread(target=self._guarded, name=f"fetch:{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()
        for index in range(self.slots):
            threading.Thread(target=self._guarded_slot, args=(index,),
                             name=f"slot:{self.thread.name[6:]}:{index}", daemon=True).start()

    def _guarded(self) -> None:
        try:
            self._loop()
        except BaseException:
            log.exception("consumer loop %s died; exiting so the supervisor restarts this "
                          "process", self.thread.name)
            os._exit(EX_SOFTWARE)

    # -- how much to lease ---------------------------------------------------------------
    def lease_ahead(self) -> int:
        """Deliveries to hold beyond the slots: what recent handlers finish in the window
        (called with `cond` held). A handler still running counts with its time so far:
        otherwise a worker whose slots are stuck on a slow handler would lease ahead again
        right after giving its stranded leases back, and hold them from other workers in a
        lease/give-back churn until the slow handler ends."""
        if self.lane or self.handler_s is None:
            return 0
        handler_s = self.handler_s
        if self.running:
            handler_s = max(handler_s, time.monotonic() - min(self.running.values()))
        per_window = defaults.PREFETCH_WINDOW_S * self.slots / max(handler_s, 1e-6)
        return min(defaults.PREFETCH_MAX, int(per_window))

    def _want(self) -> int:
        """How many to lease now (called with `cond` held): refill when a slot is idle or
        the lease-ahead queue is down to half."""
        ahead = self.lease_ahead()
        room = self.slots + ahead - self.outstanding
        if room <= 0 or self.queued > ahead // 2:
            return 0
        return room

    # -- the loop ------------------------------------------------------------------------
    def _loop(self) -> None:
        consumer = self.consumer
        idle_s = defaults.POLL_INTERVAL_S
        while not consumer.stopping.is_set():
            self.tick = time.monotonic()
            self._give_back_stranded()
            with self.cond:
                want = self._want()
                if want == 0:
                    acks_due = bool(self.acks) and (
                        time.monotonic() - self.acks_since >= defaults.ACK_DELAY_MAX_S)
                    if not acks_due:
                        busy = self.acks or self.queued
                        self.cond.wait(timeout=defaults.ACK_DELAY_MAX_S if busy else 0.5)
                        continue
                acks, self.acks = self.acks, []
            if want == 0:
                self._ack(acks)
                continue
            leases = self._pull(want, acks)
            if leases:
                with self.cond:
                    self.outstanding += len(leases)
                    self.queued += len(leases)
                for lease in leases:
                    consumer.inflight.add(lease)
                    self.work.put(lease)
                idle_s = defaults.POLL_INTERVAL_S
                continue
            self.wake.wait(timeout=idle_s)
            if not self.wake.is_set():
                idle_s = min(defaults.IDLE_POLL_MAX_S, idle_s * 2)
            self.wake.clear()

    def _give_back_stranded(self) -> None:
        """Every slot has been stuck on a slow handler for a while: release what waits
        behind them so other workers run it now."""
        with self.cond:
            if not self.queued or len(self.running) < self.slots:
                return
            now = time.monotonic()
            if now - max(self.running.values()) < defaults.STRANDED_AFTER_S:
                return
        taken = self.take_unstarted()
        if not taken:
            return
        for lease in taken:
            self.consumer.inflight.remove(lease)
        try:
            self.consumer.broker.release([(x.delivery_id, x.token) for x in taken], time.time())
        except Exception as exc:  # their leases expire and they are redelivered anyway
            self.consumer.db_trouble(f"giving back leased-ahead deliveries: {exc}")
            return
        log.info("%s: a handler has run over %.2fs; gave back %d leased-ahead delivery(ies) "
                 "for other workers", self.thread.name[6:], defaults.STRANDED_AFTER_S, len(taken))

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

    # -- the slots -----------------------------------------------------------------------
    def _guarded_slot(self, index: int) -> None:
        """A slot that dies would leave its subscription one slot short for good (and with
        concurrency 1, wedged): exit so the supervisor restarts the process instead."""
        try:
            self._slot(index)
        except BaseException:
            log.exception("slot %s of %s died; exiting so the supervisor restarts this process",
                          index, self.thread.name[6:])
            os._exit(EX_SOFTWARE)

    def _slot(self, index: int) -> None:
        consumer = self.consumer
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(consumer.async_error)
        while True:
            lease = self.work.get()
            if lease is None:
                return
            started = time.monotonic()
            with self.cond:
                self.queued -= 1
                self.running[index] = started
                if self.queued <= self.lease_ahead() // 2:
                    self.cond.notify()
            sub = self.subs[lease.message.subscription]
            succeeded = False
            try:
                succeeded = consumer.executor.run(sub, lease, loop)
            except Exception:
                log.exception("delivery %s: could not record its outcome", lease.delivery_id)
            finally:
                took = time.monotonic() - started
                with self.cond:
                    del self.running[index]
                    if succeeded:
                        if not self.acks:
                            self.acks_since = time.monotonic()
                        self.acks.append(lease)
                    self.outstanding -= 1
                    self.handler_s = (took if self.handler_s is None
                                      else self.handler_s + 0.2 * (took - self.handler_s))
                    self.cond.notify()

    def take_unstarted(self) -> list[Lease]:
        """Take back leases queued but not yet started (at shutdown, or stranded)."""
        taken: list[Lease] = []
        while True:
            try:
                lease = self.work.get_nowait()
            except queue.Empty:
                break
            if lease is not None:
                taken.append(lease)
        if taken:
            with self.cond:
                self.queued -= len(taken)
                self.outstanding -= len(taken)
        return taken


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
        self.timings = Timings()
        self.executor = Executor(self.broker, reporter, self.inflight, clock, self.timings)
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
        last_extend = last_flush = time.monotonic()
        while not self.stopping.wait(defaults.HEARTBEAT_INTERVAL_S):
            now = time.monotonic()
            if all(f.thread.is_alive() and now - f.tick < self.stall_timeout_s / 2
                   for f in self.fetchers):
                self.reporter.send("hb")
            if now - last_extend > defaults.LEASE_S / 3:
                last_extend = now
                self._extend()
            if now - last_flush > defaults.TIMINGS_FLUSH_S:
                last_flush = now
                self.flush_timings()

    def flush_timings(self) -> None:
        """Add the handler durations observed since the last flush to the database."""
        taken = self.timings.take()
        try:
            self.broker.add_durations(taken)
        except Exception as exc:
            self.timings.give_back(taken)
            self.db_trouble(f"saving handler durations: {exc}")

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
        # a fetcher in the middle of a pull is let finish it first: what it leases then is
        # taken back below, not left leased by a process that exits
        for fetcher in self.fetchers:
            fetcher.wake.set()
            with fetcher.cond:
                fetcher.cond.notify_all()
        for fetcher in self.fetchers:
            fetcher.thread.join(timeout=defaults.LEASE_S / 2)
        unstarted = [lease for f in self.fetchers for lease in f.take_unstarted()]
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
        self.flush_timings()
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
