"""The pure parts of cron: declaration checks, the DST rule and the catch-up policy, all on
fixed clocks (no database, no processes)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from pillbox import App, ConfigError, CronError
from pillbox.cron import (
    MAX_TICKS_PER_PASS,
    Cron,
    due_ticks,
    latest_tick,
    next_tick,
    ticks_between,
)
from pillbox.messages import Message

LONDON = "Europe/London"
SPRING_2024 = date(2024, 3, 31)  # 01:00 GMT -> 02:00 BST
AUTUMN_2024 = date(2024, 10, 27)  # 02:00 BST -> 01:00 GMT
GRACE = timedelta(seconds=5)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local_day(day: date, tz: str) -> tuple[datetime, datetime]:
    """(start, end) in UTC such that (start, end] holds every instant of the local day."""
    zone = ZoneInfo(tz)
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
    following = midnight + timedelta(days=1)  # wall-clock arithmetic: the next local midnight
    step = timedelta(microseconds=1)
    return midnight.astimezone(UTC) - step, following.astimezone(UTC) - step


def day_ticks(schedule: str, day: date, tz: str = LONDON) -> list[datetime]:
    return ticks_between(schedule, tz, *local_day(day, tz))


def walls(ticks: list[datetime], tz: str = LONDON) -> list[str]:
    """Local wall time and zone abbreviation of each tick, e.g. '01:30 BST'."""
    return [t.astimezone(ZoneInfo(tz)).strftime("%H:%M %Z") for t in ticks]


def gaps(ticks: list[datetime]) -> set[timedelta]:
    return {b - a for a, b in itertools.pairwise(ticks)}


def cron(schedule: str = "* * * * *", *, catch_up: str = "latest", tz: str = "UTC") -> Cron:
    return Cron(name="job", schedule=schedule, tz=tz, catch_up=catch_up, overlap=False,
                func=lambda: None)


# -- declaration ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ("61 * * * *", "out of range"),
        ("* 24 * * *", "out of range"),
        ("*/0 * * * *", "step"),
        ("a b c d e", "not acceptable"),
        ("0 0 * * 8", "out of range"),
        ("0 0 30 2 *", "never fires"),  # 30 February
        ("0 0 31 4 *", "never fires"),  # 31 April
        ("* * * *", "5 fields"),
        ("* * * * * * *", "5 fields"),
        ("", "5 fields"),
        ("@hourly", "5 fields"),
    ],
)
def test_a_bad_expression_is_a_cron_error_naming_the_cron_and_the_expression(schedule, why):
    app = App("unit", database="sqlite:///never-opened.db")
    with pytest.raises(CronError) as caught:

        @app.cron(schedule, name="nightly-report")
        def report() -> None: ...

    text = str(caught.value)
    assert "'nightly-report'" in text
    assert repr(schedule) in text
    assert why in text
    assert app.crons == {} and app.subscriptions == {}


@pytest.mark.parametrize("tz", ["Mars/Olympus_Mons", "", "Europe/../etc/passwd", "GMT+25"])
def test_a_bad_time_zone_is_a_cron_error_naming_the_cron_expression_and_zone(tz):
    app = App("unit", database="sqlite:///never-opened.db")
    with pytest.raises(CronError) as caught:
        app.cron("30 1 * * *", name="nightly-report", tz=tz)(lambda: None)
    text = str(caught.value)
    assert "'nightly-report'" in text
    assert "'30 1 * * *'" in text
    assert f"unknown time zone {tz!r}" in text


def test_a_cron_error_is_a_config_error_raised_at_declaration_not_at_run():
    assert issubclass(CronError, ConfigError)
    app = App("unit", database="sqlite:///never-opened.db")
    with pytest.raises(CronError, match="catch_up must be one of latest, all, none"):
        app.cron("* * * * *", name="x", catch_up="some")(lambda: None)
    with pytest.raises(CronError, match="overlap must be True or False"):
        app.cron("* * * * *", name="x", overlap="no")(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(CronError, match=r"cron '123': schedule 123 must have 5 fields"):
        app.cron(123, name="123")(lambda: None)  # type: ignore[arg-type]


def test_a_good_cron_declares_its_internal_subscription():
    app = App("unit", database="sqlite:///never-opened.db")

    @app.cron("*/10 * * * * *", tz=LONDON, catch_up="all", overlap=True, timeout=7,
              max_attempts=2, max_crashes=4, memory_limit="64MB")
    def nudge_stale_incidents() -> None: ...

    declared = app.crons["nudge-stale-incidents"]
    assert (declared.schedule, declared.tz, declared.catch_up, declared.overlap) == (
        "*/10 * * * * *", LONDON, "all", True)
    sub = app.subscriptions["cron.nudge-stale-incidents"]
    assert sub.topic == "cron.nudge-stale-incidents"
    assert (sub.timeout_s, sub.max_attempts, sub.max_crashes, sub.concurrency) == (7, 2, 4, 1)
    assert sub.memory_limit_bytes == 64_000_000
    with pytest.raises(ConfigError, match="declared twice"):
        app.cron("* * * * *", name="nudge-stale-incidents")(lambda: None)


def test_defaults_are_utc_latest_no_overlap_one_attempt():
    app = App("unit", database="sqlite:///never-opened.db")

    @app.cron("0 * * * *")
    def hourly_job() -> None: ...

    declared = app.crons["hourly-job"]
    assert (declared.tz, declared.catch_up, declared.overlap) == ("UTC", "latest", False)
    assert app.subscriptions["cron.hourly-job"].max_attempts == 1


def test_the_cron_function_gets_the_tick_message_only_if_it_takes_one():
    app = App("unit", database="sqlite:///never-opened.db")
    seen: list[object] = []

    @app.cron("* * * * *", name="bare")
    def bare() -> str:
        seen.append("bare")
        return "bare"

    @app.cron("* * * * *", name="with-message")
    def with_message(message: Message) -> str:
        seen.append(message.payload["tick"])
        return "with"

    @app.cron("* * * * *", name="async")
    async def run_async(message: Message) -> str:
        seen.append(("async", message.payload["tick"]))
        return "async"

    message = Message(id="m", topic="cron.x", subscription="cron.x",
                      payload={"cron": "x", "tick": "2024-01-01T00:00:00+00:00"},
                      attributes={}, published_at=0.0, attempt=1, delivery_id=1)
    assert app.handler("cron.bare")(message) == "bare"
    assert app.handler("cron.with-message")(message) == "with"
    assert asyncio.run(app.handler("cron.async")(message)) == "async"
    assert seen == ["bare", "2024-01-01T00:00:00+00:00", ("async", "2024-01-01T00:00:00+00:00")]


# -- DST -----------------------------------------------------------------------------------
def test_daily_0130_london_runs_once_on_the_spring_forward_day_shifted_by_the_gap():
    ticks = day_ticks("30 1 * * *", SPRING_2024)
    assert ticks == [utc(2024, 3, 31, 1, 30)]
    assert walls(ticks) == ["02:30 BST"]  # 01:30 does not exist; it runs an hour later


def test_daily_0130_london_runs_once_not_twice_on_the_fall_back_day():
    ticks = day_ticks("30 1 * * *", AUTUMN_2024)
    assert ticks == [utc(2024, 10, 27, 0, 30)]
    assert walls(ticks) == ["01:30 BST"]  # the first of the two 01:30s


def test_daily_0130_london_is_at_0130_on_ordinary_days_around_the_changes():
    for day in (date(2024, 3, 30), date(2024, 4, 1), date(2024, 10, 26), date(2024, 10, 28)):
        assert walls(day_ticks("30 1 * * *", day)) == [
            "01:30 " + ("BST" if date(2024, 3, 31) < day < date(2024, 10, 27) else "GMT")]


def test_hourly_across_spring_forward_loses_only_the_hour_that_does_not_exist():
    ticks = day_ticks("0 * * * *", SPRING_2024)
    assert len(ticks) == 23 == len(set(ticks))
    assert gaps(ticks) == {timedelta(hours=1)}  # one run per real hour, none doubled
    assert walls(ticks)[:3] == ["00:00 GMT", "02:00 BST", "03:00 BST"]


def test_hourly_across_fall_back_runs_in_both_occurrences_of_the_repeated_hour():
    ticks = day_ticks("0 * * * *", AUTUMN_2024)
    assert len(ticks) == 25 == len(set(ticks))
    assert gaps(ticks) == {timedelta(hours=1)}
    assert walls(ticks)[:4] == ["00:00 BST", "01:00 BST", "01:00 GMT", "02:00 GMT"]


def test_every_15_minutes_keeps_its_real_time_rhythm_through_both_changes():
    spring = day_ticks("*/15 * * * *", SPRING_2024)
    autumn = day_ticks("*/15 * * * *", AUTUMN_2024)
    assert (len(spring), len(autumn)) == (92, 100)  # 23 and 25 real hours
    for ticks in (spring, autumn):
        assert len(ticks) == len(set(ticks))
        assert gaps(ticks) == {timedelta(minutes=15)}
    assert walls(spring)[3:6] == ["00:45 GMT", "02:00 BST", "02:15 BST"]
    assert walls(autumn)[6:10] == ["01:30 BST", "01:45 BST", "01:00 GMT", "01:15 GMT"]


def test_every_10_seconds_across_the_changes_is_uniform():
    for moment in (utc(2024, 3, 31, 1), utc(2024, 10, 27, 1)):
        ticks = ticks_between("*/10 * * * * *", LONDON, moment - timedelta(hours=2),
                              moment + timedelta(hours=2))
        assert len(ticks) == 4 * 360
        assert gaps(ticks) == {timedelta(seconds=10)}


def test_a_fixed_hour_schedule_runs_the_repeated_hour_once():
    # every 15 minutes during the 01:00 hour only: four runs, during the first 01:00 hour
    assert walls(day_ticks("*/15 1 * * *", AUTUMN_2024)) == [
        "01:00 BST", "01:15 BST", "01:30 BST", "01:45 BST"]
    assert walls(day_ticks("*/15 1 * * *", SPRING_2024)) == [
        "02:00 BST", "02:15 BST", "02:30 BST", "02:45 BST"]


def test_new_york_0230_and_0130_run_once_on_both_change_days():
    ny = "America/New_York"
    spring, autumn = date(2024, 3, 10), date(2024, 11, 3)
    assert walls(day_ticks("30 2 * * *", spring, ny), ny) == ["03:30 EDT"]
    assert walls(day_ticks("30 2 * * *", autumn, ny), ny) == ["02:30 EST"]
    assert walls(day_ticks("30 1 * * *", autumn, ny), ny) == ["01:30 EDT"]
    assert len(day_ticks("0 * * * *", spring, ny)) == 23
    assert len(day_ticks("0 * * * *", autumn, ny)) == 25


def test_a_half_hour_shift_lord_howe():
    # Australia/Lord_Howe moves by 30 minutes: 02:00 -> 02:30 in October, back in April
    lh = "Australia/Lord_Howe"
    spring, autumn = date(2024, 10, 6), date(2024, 4, 7)
    quarter = day_ticks("*/15 * * * *", spring, lh)
    assert len(quarter) == 94 and gaps(quarter) == {timedelta(minutes=15)}
    quarter = day_ticks("*/15 * * * *", autumn, lh)
    assert len(quarter) == 98 and gaps(quarter) == {timedelta(minutes=15)}
    assert len(day_ticks("15 2 * * *", spring, lh)) == 1
    assert len(day_ticks("45 1 * * *", autumn, lh)) == 1


SCHEDULES = ["0 * * * *", "*/15 * * * *", "30 1 * * *", "*/15 1 * * *", "7 */2 * * *",
             "0 0 * * 0", "*/20 * * * * *"]
ZONES = ["UTC", LONDON, "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
# moments around the 2024 changes of the zones above, so windows straddle transitions
MOMENTS = [utc(2024, 3, 31, 1), utc(2024, 10, 27, 1), utc(2024, 3, 10, 7),
           utc(2024, 11, 3, 6), utc(2024, 10, 5, 15, 30), utc(2024, 4, 6, 15)]


@settings(max_examples=60, deadline=None, database=None)
@given(schedule=st.sampled_from(SCHEDULES), tz=st.sampled_from(ZONES),
       moment=st.sampled_from(MOMENTS),
       a=st.integers(-6 * 3600, 6 * 3600), b=st.integers(0, 6 * 3600),
       c=st.integers(0, 6 * 3600))
def test_windows_compose_and_next_latest_agree(schedule, tz, moment, a, b, c):
    start = moment + timedelta(seconds=a)
    middle = start + timedelta(seconds=b)
    end = middle + timedelta(seconds=c)
    whole = ticks_between(schedule, tz, start, end)
    assert whole == sorted(set(whole))
    assert whole == ticks_between(schedule, tz, start, middle) + ticks_between(
        schedule, tz, middle, end)
    assert all(start < t <= end for t in whole)
    assert whole[:3] == ticks_between(schedule, tz, start, end, limit=3)
    if whole:
        assert next_tick(schedule, tz, start) == whole[0]
        assert latest_tick(schedule, tz, start, end) == whole[-1]
        pairs = list(itertools.pairwise(whole))
        for earlier, later in pairs[:12] + pairs[-12:]:  # both ends of the window
            assert next_tick(schedule, tz, earlier) == later
    else:
        assert latest_tick(schedule, tz, start, end) is None
        assert next_tick(schedule, tz, start) > end


@functools.cache
def fields(schedule: str) -> tuple[list[object], list[object]]:
    minutes, hours, *days = croniter(schedule, datetime(2000, 1, 1)).expanded
    assert all(field == ["*"] for field in days)
    return minutes, hours


def matches(schedule: str, wall: datetime) -> bool:
    """Whether a minute-level schedule with `*` day, month and weekday fields matches."""
    minutes, hours = fields(schedule)
    return (minutes == ["*"] or wall.minute in minutes) and (
        hours == ["*"] or wall.hour in hours)


def fires_by_the_rule(schedule: str, tz: str, instant: datetime) -> bool:
    """The DST rule read from the instant's side, minute by minute (an independent oracle)."""
    zone = ZoneInfo(tz)
    local = instant.astimezone(zone)
    wall = local.replace(tzinfo=None)
    every_hour = fields(schedule)[1] == ["*"]
    if matches(schedule, wall) and (local.fold == 0 or every_hour):
        return True
    # a wall time that does not exist runs at the instant the clock read it under the offset
    # in force before the gap
    before = (instant - timedelta(hours=3)).astimezone(zone).utcoffset()
    assert before is not None
    shifted = (instant + before).replace(tzinfo=None)
    exists = shifted.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(
        tzinfo=None) == shifted
    return not exists and matches(schedule, shifted)


def transitions(tz: str, year: int) -> list[datetime]:
    """The instants (to the minute) at which the zone's UTC offset changes during a year."""
    zone = ZoneInfo(tz)
    found = []
    day = utc(year, 1, 1)
    while day.year == year:
        following = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            minute = day
            while minute.astimezone(zone).utcoffset() == day.astimezone(zone).utcoffset():
                minute += timedelta(minutes=1)
            found.append(minute)
        day = following
    return found


@pytest.mark.parametrize("tz", ["Europe/London", "America/New_York", "Australia/Lord_Howe",
                                "America/Santiago", "Europe/Dublin"])
def test_agrees_with_a_minute_by_minute_oracle_around_every_change(tz):
    schedules = ["0 * * * *", "*/15 * * * *", "30 1 * * *", "30 2 * * *", "*/15 1 * * *",
                 "15 0-3 * * *", "0 0 * * *", "45 23 * * *", "* * * * *"]
    changes = transitions(tz, 2024)
    assert len(changes) == 2
    for change in changes:
        start, end = change - timedelta(hours=5), change + timedelta(hours=5)
        minutes = [start + timedelta(minutes=m) for m in range(1, 10 * 60 + 1)]
        for schedule in schedules:
            expected = [m for m in minutes if fires_by_the_rule(schedule, tz, m)]
            assert ticks_between(schedule, tz, start, end) == expected, (schedule, change)


def test_per_second_schedules_are_cheap_to_evaluate():
    now = utc(2024, 10, 27, 1, 0, 0)  # right at a transition, the costliest place
    began = time.perf_counter()
    for _ in range(20):
        assert ticks_between("* * * * * *", LONDON, now - timedelta(seconds=2), now)
        next_tick("* * * * * *", LONDON, now)
    assert time.perf_counter() - began < 1.0


# -- catch-up -------------------------------------------------------------------------------
def test_a_cron_that_never_ran_only_runs_ticks_after_the_scheduler_started():
    started = utc(2024, 1, 1, 12, 0, 30)
    for policy in ("latest", "all", "none"):
        job = cron(catch_up=policy)
        assert due_ticks(job, None, started, started, GRACE) == []
        assert due_ticks(job, None, started, utc(2024, 1, 1, 12, 0, 59), GRACE) == []
        assert due_ticks(job, None, started, utc(2024, 1, 1, 12, 1, 2), GRACE) == [
            utc(2024, 1, 1, 12, 1)]


def test_missed_ticks_latest_runs_only_the_newest():
    last, now = utc(2024, 1, 1, 12, 0), utc(2024, 1, 1, 12, 5, 30)
    assert due_ticks(cron(), last, last, now, GRACE) == [utc(2024, 1, 1, 12, 5)]


def test_missed_ticks_all_runs_every_one_oldest_first():
    last, now = utc(2024, 1, 1, 12, 0), utc(2024, 1, 1, 12, 5, 30)
    assert due_ticks(cron(catch_up="all"), last, last, now, GRACE) == [
        utc(2024, 1, 1, 12, minute) for minute in range(1, 6)]


def test_missed_ticks_none_runs_only_a_tick_within_the_grace():
    last = utc(2024, 1, 1, 12, 0)
    job = cron(catch_up="none")
    assert due_ticks(job, last, last, utc(2024, 1, 1, 12, 5, 30), GRACE) == []
    assert due_ticks(job, last, last, utc(2024, 1, 1, 12, 5, 4), GRACE) == [
        utc(2024, 1, 1, 12, 5)]


def test_nothing_is_due_again_once_the_latest_tick_was_claimed():
    last, now = utc(2024, 1, 1, 12, 5), utc(2024, 1, 1, 12, 5, 59)
    for policy in ("latest", "all", "none"):
        assert due_ticks(cron(catch_up=policy), last, last, now, GRACE) == []


def test_catching_up_a_long_outage_is_bounded_and_fast():
    now = utc(2024, 6, 1)
    last = now - timedelta(days=30)
    every_second = cron("* * * * * *", catch_up="all")
    began = time.perf_counter()
    due = due_ticks(every_second, last, last, now, GRACE)
    assert len(due) == MAX_TICKS_PER_PASS
    assert due[0] == last + timedelta(seconds=1)
    assert gaps(due) == {timedelta(seconds=1)}
    # the next pass carries on where this one stopped
    assert due_ticks(every_second, due[-1], last, now, GRACE)[0] == due[-1] + timedelta(seconds=1)
    assert due_ticks(cron("* * * * * *"), last - timedelta(days=335), last, now, GRACE) == [now]
    assert time.perf_counter() - began < 1.0


def test_catch_up_is_computed_in_the_crons_time_zone():
    # a London daily 01:30 cron, down from before the spring change to the evening after
    job = cron("30 1 * * *", catch_up="all", tz=LONDON)
    last, now = utc(2024, 3, 29, 1, 30), utc(2024, 3, 31, 20)
    assert due_ticks(job, last, last, now, GRACE) == [utc(2024, 3, 30, 1, 30),
                                                      utc(2024, 3, 31, 1, 30)]
    job = cron("30 1 * * *", catch_up="latest", tz=LONDON)
    assert due_ticks(job, last, last, now, GRACE) == [utc(2024, 3, 31, 1, 30)]
