"""Cron declarations and the pure schedule arithmetic (parsing is croniter's job).

Time zones and DST, the rule: a schedule is read in the cron's wall-clock time.
- A wall time that does not exist (spring forward) runs at the same offset from the start of
  the gap, i.e. shifted forward by the gap: 01:30 Europe/London on the spring-forward day runs
  at 02:30 BST, once.
- A wall time that happens twice (fall back) runs once, at its first occurrence.
- Two wall times that map to the same instant run once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from pillbox.errors import CronError
from pillbox.messages import Message
from pillbox.policy import Subscription, check_name

CATCH_UP = ("latest", "all", "none")
CRON_PREFIX = "cron."
_MARGIN = timedelta(hours=3)  # covers any DST shift when walking wall-clock time


@dataclass(frozen=True, kw_only=True)
class Cron:
    name: str
    schedule: str
    tz: str
    catch_up: str
    overlap: bool
    func: Callable[..., Any]

    @property
    def topic(self) -> str:
        return CRON_PREFIX + self.name

    @property
    def subscription(self) -> str:
        return CRON_PREFIX + self.name

    def validate(self) -> None:
        check_name("cron", self.name)
        where = f"cron {self.name!r}"
        if not isinstance(self.schedule, str) or len(self.schedule.split()) not in (5, 6):
            raise CronError(f"{where}: schedule {self.schedule!r} must have 5 fields "
                            "(minute hour day month weekday) or 6 with seconds first")
        try:
            croniter(self.schedule, datetime(2000, 1, 1), second_at_beginning=True)
        except (ValueError, KeyError, TypeError) as exc:
            raise CronError(f"{where}: bad schedule {self.schedule!r}: {exc}") from None
        zone(self.tz, where)
        if self.catch_up not in CATCH_UP:
            raise CronError(f"{where}: catch_up must be one of {', '.join(CATCH_UP)}, "
                            f"got {self.catch_up!r}")
        if not callable(self.func):
            raise CronError(f"{where}: {self.func!r} is not callable")


def zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise CronError(f"{where}: unknown time zone {name!r}") from None


def ticks_between(schedule: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """UTC instants at which the schedule fires, in (start, end], with the DST rule above."""
    found = []
    for instant in _instants(schedule, zone(tz, "cron"), start - _MARGIN):
        if instant > end + _MARGIN:
            break
        if start < instant <= end:
            found.append(instant)
    return sorted(set(found))


def next_tick(schedule: str, tz: str, after: datetime) -> datetime:
    """The first UTC instant strictly after `after` at which the schedule fires."""
    best: datetime | None = None
    for instant in _instants(schedule, zone(tz, "cron"), after - _MARGIN):
        if instant > after and (best is None or instant < best):
            best = instant
        if best is not None and instant > best + _MARGIN:
            break
    assert best is not None
    return best


def _instants(schedule: str, tz: ZoneInfo, start: datetime) -> Iterator[datetime]:
    """Walk wall-clock fire times from `start` and map each to UTC (fold=0 rule)."""
    wall = start.astimezone(tz).replace(tzinfo=None)
    it = croniter(schedule, wall, second_at_beginning=True)
    while True:
        naive: datetime = it.get_next(datetime)
        yield naive.replace(tzinfo=tz, fold=0).astimezone(UTC)


def due_ticks(cron: Cron, last: datetime | None, started: datetime, now: datetime,
              grace: timedelta) -> list[datetime]:
    """Ticks to run now, by the catch-up policy.

    `last`: the latest tick ever claimed (None: never ran, so only ticks since `started`).
    "all" runs every missed tick, "latest" only the newest, "none" only ticks within `grace`
    of now.
    """
    ticks = ticks_between(cron.schedule, cron.tz, last or started, now)
    if not ticks:
        return []
    if cron.catch_up == "all":
        return ticks
    if cron.catch_up == "latest":
        return ticks[-1:]
    return [t for t in ticks if t >= now - grace]


def cron_subscription(cron: Cron, *, timeout_s: float, max_attempts: int, max_crashes: int,
                      memory_limit_bytes: int | None) -> Subscription:
    """The internal subscription that executes a cron's ticks like any message."""
    return Subscription(name=cron.subscription, topic=cron.topic, handler=_runner(cron.func),
                        max_attempts=max_attempts, max_crashes=max_crashes, timeout_s=timeout_s,
                        concurrency=1, memory_limit_bytes=memory_limit_bytes)


def _runner(func: Callable[..., Any]) -> Callable[[Message], Any]:
    """Call the cron function with no argument, or with the tick's message if it takes one."""
    takes_message = bool(inspect.signature(func).parameters)
    if inspect.iscoroutinefunction(func):

        async def run_async(message: Message) -> Any:
            return await (func(message) if takes_message else func())

        return run_async

    def run(message: Message) -> Any:
        return func(message) if takes_message else func()

    return run
