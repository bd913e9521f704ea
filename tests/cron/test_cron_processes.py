"""Crons in real processes: three cron processes at once execute every tick exactly once, and a
cron whose run segfaults is quarantined as a poison pill under `pillbox run` while later ticks
still run. On SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timedelta

import pytest

from helpers import eventually

pytestmark = pytest.mark.crash

TICKS_WHILE_ALL_RUN = 5


def test_three_cron_processes_execute_every_tick_exactly_once(cronapp):
    cronapp.broker  # noqa: B018 - the schema exists before the processes race to it
    worker = cronapp.child("worker")
    schedulers = [cronapp.child("cron") for _ in range(3)]

    def all_scheduling() -> bool:
        for process in [worker, *schedulers]:
            assert process.alive(), process.output()[-3000:]
        # a second heartbeat comes after a whole pass of claiming
        return all(s.events["hb"] >= 2 for s in schedulers)

    eventually(all_scheduling, timeout_s=30, interval_s=0.05)
    before = len(cronapp.ticks("every-second"))

    def several_ticks_claimed() -> bool:
        for process in schedulers:
            assert process.alive(), process.output()[-3000:]
        return len(cronapp.ticks("every-second")) >= before + TICKS_WHILE_ALL_RUN

    eventually(several_ticks_claimed, timeout_s=TICKS_WHILE_ALL_RUN + 15, interval_s=0.1)
    assert [s.stop() for s in schedulers] == [0, 0, 0]

    claimed = cronapp.ticks("every-second")
    assert all(published for _, published in claimed)  # overlap=True: nothing skipped
    times = [datetime.fromisoformat(tick) for tick, _ in claimed]
    assert [b - a for a, b in itertools.pairwise(times)] == [
        timedelta(seconds=1)] * (len(times) - 1)  # catch_up="all": not one second lost

    def all_executed() -> bool:
        assert worker.alive(), worker.output()[-3000:]
        acked = cronapp.broker.deliveries(subscription="cron.every-second", state="acked")
        return len(acked) == len(claimed)

    eventually(all_executed, timeout_s=20, interval_s=0.1)
    assert worker.stop() == 0
    executed = Counter(tick for cron, tick, _, what, _ in cronapp.runs()
                       if cron == "cron.every-second" and what == "ok")
    assert executed == Counter(tick for tick, _ in claimed)
    assert set(executed.values()) == {1}
    deliveries = cronapp.broker.deliveries(subscription="cron.every-second")
    assert len(deliveries) == len(claimed)
    assert {(d.state, d.attempt) for d in deliveries} == {("acked", 1)}


def test_a_segfaulting_cron_run_is_a_poison_pill_and_later_ticks_still_run(cronapp):
    broker = cronapp.broker
    running = cronapp.run("--workers", "1", crons="poison")

    def quarantined():
        assert running.alive(), running.output()[-3000:]
        dead = broker.deliveries(subscription="cron.poison", state="dead")
        assert len(dead) <= 1, dead
        return dead[0] if dead else None

    dead = eventually(quarantined, timeout_s=40, interval_s=0.1)
    poison = broker.delivery(dead.id)
    assert poison is not None
    assert (poison.state, poison.dead_reason, poison.crashes) == ("dead", "poison pill", 2)
    assert poison.payload["tick"] == cronapp.mark_path.read_text()
    crashes = [broker.crash(crash_id) for crash_id in poison.crash_ids]
    assert len(crashes) == 2
    assert {c.cause for c in crashes if c is not None} == {"segfault"}
    assert any("in poison" in (c.traceback or "") for c in crashes if c is not None)

    def a_later_tick_ran():
        assert running.alive(), running.output()[-3000:]
        return [d for d in broker.deliveries(subscription="cron.poison", state="acked")
                if d.payload["tick"] > poison.payload["tick"]]

    later = eventually(a_later_tick_ran, timeout_s=20, interval_s=0.1)
    ran = {(tick, what) for cron, tick, _, what, _ in cronapp.runs() if cron == "cron.poison"}
    assert (later[0].payload["tick"], "ok") in ran
    assert running.stop(timeout_s=30) == 0

    # overlap=False: nothing else of the cron ran while the poison pill was being retried
    assert poison.finished_at is not None
    others = [d for d in broker.deliveries(subscription="cron.poison") if d.id != poison.id]
    assert others and all(d.published_at >= poison.finished_at for d in others)
    assert all(d.state == "acked" and d.crashes == 0 for d in others)
    segfaulted = [tick for tick, what in ran if what == "segfault"]
    assert set(segfaulted) == {poison.payload["tick"]}
