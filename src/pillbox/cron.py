"""Cron declarations and the pure schedule arithmetic (parsing is croniter's job).

A schedule is standard 5-field cron (minute hour day month weekday), or 6 fields with seconds
first. It is read in the cron's wall-clock time (`tz`), and the UTC instants it fires at follow
this rule around daylight-saving changes:

- A wall time that does not exist (spring forward) runs shifted forward by the gap: 01:30
  Europe/London on the spring-forward day runs at 02:30 BST, once.
- A wall time that happens twice (fall back) runs once, at its first occurrence, unless the
  schedule fires in every hour (its hour field is `*`: hourly, every 15 minutes, every 10
  seconds...): such a schedule runs at both occurrences, which are distinct real instants,
  so it keeps its real-time rhythm through the repeated hour.
- Never two runs at one instant: wall times that map to the same instant run once (hourly on
  the spring-forward day: 01:00 shifted is 02:00 BST, which is also the 02:00 run).

So a daily 01:30 cron runs once on both change days; an hourly cron runs 23 times on the
spring-forward day and 25 times on the fall-back day, exactly once per real hour.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from pillbox.errors import CronError
from pillbox.messages import Message
from pillbox.policy import Subscription, check_name, check_not_generator

CATCH_UP = ("latest", "all", "none")
CRON_PREFIX = "cron."
MAX_TICKS_PER_PASS = 1000
"""Most ticks `due_ticks` returns at once (catch_up="all" after a long outage): the rest are
due on the next pass, so a scheduler never blocks for long."""

_NEAR = timedelta(hours=3)  # longer than any DST shift: how far to look for a transition
_STEP = timedelta(seconds=1)  # a schedule's resolution: croniter walks strictly after low
_FIRST_SPAN = timedelta(seconds=2)  # next/latest tick searches start this wide and widen
_NEVER = timedelta(days=366 * 30)  # a schedule with no tick in this span never fires


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
        _check_signature(self.func, where)
        check_not_generator(where, self.func)
        if not isinstance(self.schedule, str) or len(self.schedule.split()) not in (5, 6):
            raise CronError(f"{where}: schedule {self.schedule!r} must have 5 fields "
                            "(minute hour day month weekday) or 6 with seconds first")
        try:
            croniter(self.schedule, datetime(2000, 1, 1), second_at_beginning=True).get_next(
                datetime)
        except CroniterError as exc:
            detail = "it never fires" if "find next date" in str(exc) else str(exc)
            raise CronError(f"{where}: bad schedule {self.schedule!r}: {detail}") from None
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CronError(f"{where}: bad schedule {self.schedule!r}: {exc}") from None
        zone(self.tz, f"{where} (schedule {self.schedule!r})")
        if self.catch_up not in CATCH_UP:
            raise CronError(f"{where}: catch_up must be one of {', '.join(CATCH_UP)}, "
                            f"got {self.catch_up!r}")
        if not isinstance(self.overlap, bool):
            raise CronError(f"{where}: overlap must be True or False, got {self.overlap!r}")
        if not callable(self.func):
            raise CronError(f"{where}: {self.func!r} is not callable")


def _check_signature(func: Callable[..., Any], where: str) -> None:
    """A cron function takes no argument, or one (the tick's message)."""
    if callable(func) and _takes_message(func) is None:
        raise CronError(f"{where}: the function must take no argument or one (the tick's "
                        f"message), but its signature is {inspect.signature(func)}")


def _takes_message(func: Callable[..., Any]) -> bool | None:
    """True: call it with the tick's message; False: with nothing; None: it takes neither
    (a keyword-only parameter is not given the message: `def f(*, m=None)` is called bare)."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some builtins and C callables: cannot tell
        return False
    for args in ((object(),), ()):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return bool(args)
    return None


def zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise CronError(f"{where}: unknown time zone {name!r}") from None


def ticks_between(schedule: str, tz: str, start: datetime, end: datetime,
                  limit: int | None = None) -> list[datetime]:
    """UTC instants at which the schedule fires, in (start, end], sorted, with the DST rule
    above; only the first `limit` when given (found in widening windows, so a short answer
    from a long range stays cheap)."""
    if limit is None:
        return _ticks(schedule, zone(tz, "cron"), start, end)
    found: list[datetime] = []
    low, span = start, _FIRST_SPAN
    while low < end and len(found) < limit:
        high = min(end, low + span)
        found += _ticks(schedule, zone(tz, "cron"), low, high)
        low, span = high, span * 2
    return found[:limit]


def next_tick(schedule: str, tz: str, after: datetime) -> datetime:
    """The first UTC instant strictly after `after` at which the schedule fires."""
    ticks = ticks_between(schedule, tz, after, after + _NEVER, limit=1)
    if not ticks:
        raise CronError(f"schedule {schedule!r} never fires after {after.isoformat()}")
    return ticks[0]


def latest_tick(schedule: str, tz: str, since: datetime, until: datetime) -> datetime | None:
    """The last UTC instant in (since, until] at which the schedule fires, or None."""
    span = _FIRST_SPAN
    while True:
        low = max(since, until - span)
        ticks = ticks_between(schedule, tz, low, until)
        if ticks:
            return ticks[-1]
        if low == since:
            return None
        span *= 8


def _ticks(schedule: str, tzinfo: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """ticks_between for one zone. A wall time W runs at W minus an offset the zone was in
    near W (the DST rule), so only wall times in (start + offset, end + offset] matter, for
    each such offset: a walk that is as cheap as the window is wide, even at a transition."""
    every_hour = _every_hour(schedule)
    found: set[datetime] = set()
    for low, high in _wall_ranges(tzinfo, start, end):
        walk = croniter(schedule, low, second_at_beginning=True)
        while True:
            wall: datetime = walk.get_next(datetime)
            if wall > high:
                break
            for instant in _instants(wall, tzinfo, every_hour):
                if start < instant <= end:
                    found.add(instant)
    return sorted(found)


def _wall_ranges(tzinfo: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime,
                                                                                  datetime]]:
    """Naive wall-time ranges [low, high] holding every wall time whose instant (by the DST
    rule) can be in (start, end]."""
    def offset(at: datetime) -> timedelta:
        return at.astimezone(tzinfo).utcoffset() or timedelta(0)

    if end - start <= _NEAR:  # at most one transition near: one range per offset in force
        offsets = {offset(start - _NEAR), offset(start), offset(end)}
        return [(_wall(start, o) - _STEP, _wall(end, o)) for o in sorted(offsets)]
    # a long window: one range, widened at each end by the shift of a transition there
    low = min(offset(start - _NEAR), offset(start), offset(start + _NEAR))
    high = max(offset(end - _NEAR), offset(end), offset(end + _NEAR))
    return [(_wall(start, low) - _STEP, _wall(end, high))]


def _wall(instant: datetime, offset: timedelta) -> datetime:
    """The naive wall time `instant` reads under `offset`."""
    return (instant.astimezone(UTC) + offset).replace(tzinfo=None)


def _instants(wall: datetime, tzinfo: ZoneInfo, every_hour: bool) -> list[datetime]:
    """The UTC instants a fire time in wall-clock time runs at (the DST rule)."""
    first = wall.replace(tzinfo=tzinfo, fold=0)  # a time in a gap: the offset before it
    second = wall.replace(tzinfo=tzinfo, fold=1)
    instants = [first.astimezone(UTC)]
    repeated = (first.utcoffset() or timedelta(0)) > (second.utcoffset() or timedelta(0))
    if repeated and every_hour:
        instants.append(second.astimezone(UTC))
    return instants


@functools.lru_cache(maxsize=256)
def _every_hour(schedule: str) -> bool:
    """Whether the schedule's hour field matches all 24 hours."""
    expanded = croniter(schedule, datetime(2000, 1, 1), second_at_beginning=True).expanded
    return list(expanded[1]) == ["*"] or len(expanded[1]) == 24


def due_ticks(cron: Cron, last: datetime | None, started: datetime, now: datetime,
              grace: timedelta, limit: int = MAX_TICKS_PER_PASS) -> list[datetime]:
    """Ticks to run now, oldest first, by the catch-up policy.

    `last`: the latest tick ever claimed (None: never ran, so only ticks since `started`).
    "all" runs every missed tick (at most `limit` per call; the rest on the next call),
    "latest" only the newest, "none" only ticks within `grace` of now.
    """
    since = started if last is None else last
    if cron.catch_up == "latest":
        tick = latest_tick(cron.schedule, cron.tz, since, now)
        return [] if tick is None else [tick]
    if cron.catch_up == "none":
        since = max(since, now - grace)
    return ticks_between(cron.schedule, cron.tz, since, now, limit=limit)


def cron_subscription(cron: Cron, *, timeout_s: float, max_attempts: int, max_crashes: int,
                      memory_limit_bytes: int | None) -> Subscription:
    """The internal subscription that executes a cron's ticks like any message."""
    return Subscription(name=cron.subscription, topic=cron.topic, handler=_runner(cron.func),
                        max_attempts=max_attempts, max_crashes=max_crashes, timeout_s=timeout_s,
                        concurrency=1, memory_limit_bytes=memory_limit_bytes)


def _runner(func: Callable[..., Any]) -> Callable[[Message], Any]:
    """Call the cron function with no argument, or with the tick's message if it takes one."""
    takes_message = bool(_takes_message(func))
    if inspect.iscoroutinefunction(func):

        async def run_async(message: Message) -> Any:
            return await (func(message) if takes_message else func())

        return run_async

    def run(message: Message) -> Any:
        return func(message) if takes_message else func()

    return run
