"""The Scheduler on a fixed, hand-moved clock against the real databases (SQLite and
PostgreSQL): catch-up policies, overlap, exactly-once claiming among several schedulers, and the
DST rule end to end. Ticks are "executed" here by pulling and acking their deliveries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from pillbox.app import App
from pillbox.messages import Lease
from pillbox.protocol import Reporter
from pillbox.scheduler import Scheduler

T0 = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, **delta: float) -> Clock:
        self.now = T0 + timedelta(**delta)
        return self


def minute(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


def declare(app: App, name: str = "job", schedule: str = "* * * * *", **options: object) -> None:
    app.cron(schedule, name=name, **options)(lambda: None)  # type: ignore[arg-type]


def scheduler(make_app: Callable[..., App], clock: Clock, **options: object) -> Scheduler:
    """A scheduler on its own App (own connections), as another process would have."""
    app = make_app()
    declare(app, **options)
    return Scheduler(app, Reporter(None), clock=clock)


def ticks(app: App, cron: str = "job") -> list[tuple[datetime, bool]]:
    """Every claimed tick of a cron: (tick, published) — unpublished means skipped."""
    with app.broker.transaction() as cur:
        cur.execute("SELECT cron, tick_at, message_id FROM pillbox_cron_ticks ORDER BY tick_at")
        rows = cur.fetchall()
    return [(datetime.fromtimestamp(at, UTC), message_id != "")
            for name, at, message_id in rows if name == cron]


def runs(app: App, cron: str = "job") -> list[datetime]:
    """The tick of every run published for the cron, in publish order."""
    found = app.broker.deliveries(subscription=f"cron.{cron}")
    return [datetime.fromisoformat(d.payload["tick"]) for d in found]


def execute(app: App, cron: str = "job") -> list[Lease]:
    """Run (pull and ack) what is waiting on the cron's subscription, like a worker would."""
    leases = app.broker.pull(f"cron.{cron}", "test", 100, 30.0, time.time())
    for lease in leases:
        assert app.broker.ack(lease, time.time())
    return leases


def test_a_new_cron_only_runs_ticks_after_the_scheduler_started(make_app):
    clock = Clock(T0).at(seconds=30)
    sched = scheduler(make_app, clock)
    assert sched.run_due() == []
    clock.at(seconds=59)
    assert sched.run_due() == []
    clock.at(minutes=1, seconds=0.2)
    assert sched.run_due() == [("job", minute(1))]
    assert sched.run_due() == []  # claimed once, not again
    clock.at(minutes=1, seconds=40)
    assert sched.run_due() == []
    (lease,) = execute(sched.app)
    assert lease.message.payload == {"cron": "job", "tick": minute(1).isoformat()}
    assert lease.message.topic == "cron.job"
    assert lease.message.attempt == 1


def test_latest_runs_only_the_newest_missed_tick_even_across_a_restart(make_app):
    clock = Clock(T0).at(seconds=30)
    first = scheduler(make_app, clock)
    clock.at(minutes=1)
    assert first.run_due() == [("job", minute(1))]
    execute(first.app)
    # every scheduler is down from 12:01 to 12:06:30; a fresh one starts
    clock.at(minutes=6, seconds=30)
    restarted = scheduler(make_app, clock)
    assert restarted.run_due() == [("job", minute(6))]
    assert ticks(restarted.app) == [(minute(1), True), (minute(6), True)]
    assert runs(restarted.app) == [minute(1), minute(6)]


def test_all_runs_every_missed_tick_oldest_first_when_overlap_is_allowed(make_app):
    clock = Clock(T0).at(seconds=30)
    first = scheduler(make_app, clock, catch_up="all", overlap=True)
    clock.at(minutes=1)
    assert first.run_due() == [("job", minute(1))]
    clock.at(minutes=5, seconds=30)
    restarted = scheduler(make_app, clock, catch_up="all", overlap=True)
    assert restarted.run_due() == [("job", minute(n)) for n in (2, 3, 4, 5)]
    assert runs(restarted.app) == [minute(n) for n in (1, 2, 3, 4, 5)]
    assert [lease.message.payload["tick"] for lease in execute(restarted.app)] == [
        minute(n).isoformat() for n in (1, 2, 3, 4, 5)]


def test_all_without_overlap_runs_missed_ticks_one_at_a_time_and_drops_none(make_app):
    clock = Clock(T0).at(seconds=30)
    sched = scheduler(make_app, clock, catch_up="all")
    clock.at(minutes=4, seconds=30)
    assert sched.run_due() == [("job", minute(1))]
    assert sched.run_due() == []  # 12:02 waits: the 12:01 run is still in flight
    executed = [lease.message.payload["tick"] for lease in execute(sched.app)]
    for n in (2, 3, 4):
        assert sched.run_due() == [("job", minute(n))]
        assert sched.run_due() == []
        executed += [lease.message.payload["tick"] for lease in execute(sched.app)]
    assert executed == [minute(n).isoformat() for n in (1, 2, 3, 4)]
    assert ticks(sched.app) == [(minute(n), True) for n in (1, 2, 3, 4)]  # none skipped


def test_none_drops_missed_ticks_and_runs_only_one_within_the_grace(make_app):
    clock = Clock(T0).at(seconds=30)
    sched = scheduler(make_app, clock, catch_up="none")
    clock.at(minutes=1, seconds=2)
    assert sched.run_due() == [("job", minute(1))]
    execute(sched.app)
    clock.at(minutes=5, seconds=30)  # 12:02..12:05 were missed by more than the grace
    assert sched.run_due() == []
    clock.at(minutes=6, seconds=4)
    assert sched.run_due() == [("job", minute(6))]
    assert runs(sched.app) == [minute(1), minute(6)]


def test_without_overlap_a_tick_is_skipped_while_the_previous_run_is_in_flight(make_app):
    clock = Clock(T0).at(seconds=30)
    sched = scheduler(make_app, clock)
    clock.at(minutes=1)
    assert sched.run_due() == [("job", minute(1))]
    clock.at(minutes=2)  # the 12:01 run has not finished (not even started)
    assert sched.run_due() == []
    leases = sched.app.broker.pull("cron.job", "test", 10, 30.0, time.time())
    clock.at(minutes=3)  # now it is running
    assert sched.run_due() == []
    assert sched.app.broker.ack(leases[0], time.time())
    clock.at(minutes=4)
    assert sched.run_due() == [("job", minute(4))]
    assert ticks(sched.app) == [(minute(1), True), (minute(2), False), (minute(3), False),
                                (minute(4), True)]
    assert runs(sched.app) == [minute(1), minute(4)]


def test_a_run_waiting_for_a_retry_still_counts_as_in_flight(make_app):
    clock = Clock(T0).at(seconds=30)
    sched = scheduler(make_app, clock)
    clock.at(minutes=1)
    sched.run_due()
    (lease,) = sched.app.broker.pull("cron.job", "test", 10, 30.0, time.time())
    assert sched.app.broker.nack(lease, "boom", time.time() + 3600, time.time())
    clock.at(minutes=2)
    assert sched.run_due() == []
    assert ticks(sched.app)[-1] == (minute(2), False)


def test_a_dead_run_does_not_block_later_ticks(make_app):
    clock = Clock(T0).at(seconds=30)
    sched = scheduler(make_app, clock)
    clock.at(minutes=1)
    sched.run_due()
    (lease,) = sched.app.broker.pull("cron.job", "test", 10, 30.0, time.time())
    assert sched.app.broker.nack(lease, "boom", None, time.time())  # max_attempts=1: dead
    clock.at(minutes=2)
    assert sched.run_due() == [("job", minute(2))]


def test_with_overlap_runs_pile_up_instead_of_being_skipped(make_app):
    clock = Clock(T0).at(seconds=30)
    sched = scheduler(make_app, clock, overlap=True)
    for n in (1, 2, 3):
        clock.at(minutes=n)
        assert sched.run_due() == [("job", minute(n))]
    assert sched.app.broker.unfinished("cron.job") == 3
    assert all(published for _, published in ticks(sched.app))


@pytest.mark.parametrize("policy", ["latest", "all", "none"])
def test_three_schedulers_at_once_claim_every_tick_exactly_once(make_app, policy):
    clock = Clock(T0).at(seconds=0.5)
    schedulers = [scheduler(make_app, clock, schedule="* * * * * *", catch_up=policy,
                            overlap=True) for _ in range(3)]
    for sched in schedulers:
        sched.app.broker  # noqa: B018 - open (and migrate) before the race
    claimed: list[tuple[str, datetime]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def race(sched: Scheduler, barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
            got = sched.run_due()
            with lock:
                claimed.extend(got)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for second in range(1, 21):
        clock.at(seconds=second + 0.25)
        barrier = threading.Barrier(3)
        threads = [threading.Thread(target=race, args=(s, barrier)) for s in schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    expected = [T0 + timedelta(seconds=s) for s in range(1, 21)]
    assert sorted(tick for _, tick in claimed) == expected  # each tick once, none lost
    assert sorted(runs(schedulers[0].app)) == expected
    assert ticks(schedulers[0].app) == [(tick, True) for tick in expected]


def test_hourly_london_across_the_fall_back_runs_once_per_real_hour(make_app):
    # 2024-10-27: 02:00 BST becomes 01:00 GMT; step the clock every 10 minutes through it
    start = datetime(2024, 10, 26, 22, 55, tzinfo=UTC)
    clock = Clock(start)
    hourly = scheduler(make_app, clock, name="hourly", schedule="0 * * * *",
                       tz="Europe/London", catch_up="all", overlap=True)
    daily = make_app()
    declare(daily, name="daily", schedule="30 1 * * *", tz="Europe/London")
    daily_sched = Scheduler(daily, Reporter(None), clock=clock)
    got: list[tuple[str, datetime]] = []
    while clock.now < start + timedelta(hours=6):
        clock.now += timedelta(minutes=10)
        got += hourly.run_due() + daily_sched.run_due()
    assert [t for name, t in got if name == "hourly"] == [
        datetime(2024, 10, 26, 23, tzinfo=UTC) + timedelta(hours=h) for h in range(6)]
    # 01:30 happens twice on the wall clock: the daily cron runs at the first one only
    assert [t for name, t in got if name == "daily"] == [
        datetime(2024, 10, 27, 0, 30, tzinfo=UTC)]


def test_the_scheduler_sleeps_until_the_next_tick_at_most_a_heartbeat(make_app):
    clock = Clock(T0).at(seconds=59.8)
    sched = scheduler(make_app, clock)
    assert sched._sleep_s() == pytest.approx(0.2)
    clock.at(seconds=10)
    assert sched._sleep_s() == 0.5  # a heartbeat is due before the next tick
