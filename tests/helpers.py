"""Helpers shared by the test suites: polling with a deadline, declarations, crash records."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pillbox.messages import CrashRecord

T = TypeVar("T")


def eventually(fn: Callable[[], T], timeout_s: float = 5.0, interval_s: float = 0.01) -> T:
    """Call `fn` until it returns a truthy value without raising AssertionError; return it.

    Use this instead of a bare sleep whenever a test waits for another process or thread.
    On timeout the last AssertionError is re-raised (or a new one if `fn` kept returning a
    falsy value), so the failure says what was still wrong.
    """
    deadline = time.monotonic() + timeout_s
    delay = interval_s
    while True:
        try:
            result = fn()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        else:
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{getattr(fn, '__name__', fn)!s} still returned {result!r} after {timeout_s}s"
                )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


@dataclass(frozen=True)
class Sub:
    """The minimal subscription declaration `SQLBroker.register` accepts."""

    name: str
    topic: str
    max_attempts: int = 3
    max_crashes: int = 2


def crash_record(at: float, summary: str = "worker died", cause: str = "segfault",
                 pid: int = 4242) -> CrashRecord:
    """A crash record as the supervisor would store it."""
    return CrashRecord(at=at, work_type="worker", pid=pid, exit_code=None, signal=11, cause=cause,
                       in_flight=[{"delivery_id": 0}], traceback="Fatal Python error: boom",
                       peak_rss_bytes=123_456, log_tail="last line", summary=summary)
