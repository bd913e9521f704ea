"""Runs one leased delivery: report start, call the handler under guards, ack or nack, report
done. Anything the handler raises, BaseException included, becomes a nack with its traceback
kept."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from pillbox import retry
from pillbox.broker import SQLBroker
from pillbox.forensics import blackbox, sentry
from pillbox.messages import Lease
from pillbox.policy import Subscription
from pillbox.protocol import Reporter
from pillbox.worker.timings import Timings

log = logging.getLogger("pillbox.worker")


class InFlight:
    """Leases this process holds, for lease extension and shutdown release."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._leases: dict[int, Lease] = {}

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._leases[lease.delivery_id] = lease

    def remove(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(lease.delivery_id, None)

    def tokens(self) -> list[tuple[int, str]]:
        with self._lock:
            return [(lease.delivery_id, lease.token) for lease in self._leases.values()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._leases)


class Executor:
    def __init__(self, broker: SQLBroker, reporter: Reporter, inflight: InFlight,
                 clock: Callable[[], float] = time.time, timings: Timings | None = None) -> None:
        """Acks are not written here: `run` returns True on success and the caller batches
        the ack with its next pull (one commit for both)."""
        self.broker = broker
        self.reporter = reporter
        self.inflight = inflight
        self.clock = clock
        self.timings = timings or Timings()

    def run(self, sub: Subscription, lease: Lease, loop: asyncio.AbstractEventLoop | None) -> bool:
        """Run the handler; True when it succeeded (the lease is then to be acked)."""
        message = lease.message
        blackbox.set_context({"delivery_id": message.delivery_id, "message_id": message.id,
                              "subscription": sub.name})
        self.reporter.send("start", d=message.delivery_id, k=lease.token, s=sub.name,
                           m=message.id, to=sub.timeout_s, ml=sub.memory_limit_bytes,
                           th=hex(threading.get_ident()))
        succeeded = False
        failure: tuple[str, BaseException] | None = None
        started = time.perf_counter()
        try:
            self._call(sub, lease, loop)
            succeeded = True
        except BaseException as exc:  # KeyboardInterrupt and SystemExit too: a handler raised
            # them (a worker stops on its own SIGINT/SIGTERM handlers, never by these)
            failure = (traceback.format_exc(), exc)
        if succeeded:
            # first of all: from here on, should this process die before the ack is written
            # (it rides on the next pull), the supervisor acks it instead of running it again
            self.reporter.send("done", d=message.delivery_id, ok=1)
        try:
            self.timings.observe(sub.name, time.perf_counter() - started)
            if failure is not None:
                self._failed(sub, lease, *failure)
        finally:
            blackbox.set_context(None)
            self.inflight.remove(lease)
            if not succeeded:
                self.reporter.send("done", d=message.delivery_id, ok=0)
        return succeeded

    @staticmethod
    def _call(sub: Subscription, lease: Lease, loop: asyncio.AbstractEventLoop | None) -> None:
        assert loop is not None
        result = sub.handler(lease.message)
        # an awaitable is awaited: an async handler, one behind a sync-looking wrapper or an
        # object with `async def __call__`, and what they return when it is awaitable too
        # (`return send(m)` with the `await` forgotten would otherwise be acked unrun)
        for _ in range(MAX_AWAIT_DEPTH):
            if not inspect.isawaitable(result):
                break
            task = loop.create_task(_awaited(result))
            blackbox.set_task(task)  # so a kill can show where it awaits
            try:
                result = loop.run_until_complete(task)
            finally:
                blackbox.set_task(None)
        else:
            raise TypeError(f"the handler's result was still awaitable after awaiting it "
                            f"{MAX_AWAIT_DEPTH} times")
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            raise TypeError("the handler returned a generator, so its body never ran: make it "
                            "a plain function (no `yield`)")

    def _failed(self, sub: Subscription, lease: Lease, text: str, exc: BaseException) -> None:
        message = lease.message
        now = self.clock()
        decision = retry.decide(message.attempt, sub.max_attempts, sub.min_backoff_s,
                                sub.max_backoff_s, now)
        self.broker.nack(lease, text, decision.retry_at, now)
        sentry.report_exception(exc, {"delivery_id": message.delivery_id,
                                      "message_id": message.id, "subscription": sub.name,
                                      "attempt": message.attempt})
        fate = ("dead (max attempts)" if decision.retry_at is None
                else f"retry in {decision.retry_at - now:.1f}s")
        log.warning("delivery %s of %s failed (attempt %s/%s, %s): %s: %s", message.delivery_id,
                    sub.name, message.attempt, sub.max_attempts, fate, type(exc).__name__,
                    str(exc)[:200])


#: Awaitables returning awaitables are awaited this deep at most.
MAX_AWAIT_DEPTH = 8


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
