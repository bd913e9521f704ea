"""A message that kills its process is quarantined after exactly max_crashes crashes, with
the evidence attached; the messages that shared its process lose nothing."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest

from helpers import eventually

pytestmark = pytest.mark.crash

MAX_CRASHES = 3  # the fixture subscription's default


def publish_batch(app, good: int, poison_mode: str) -> tuple[list[str], str]:
    ids = []
    poison = ""
    for i in range(good + 1):
        if i == good // 4:
            poison = app.publish("jobs", {"mode": poison_mode, "i": i})
        else:
            ids.append(app.publish("jobs", {"mode": "ok", "i": i}))
    return ids, poison


def settle(running, total: int, timeout_s: float) -> None:
    """Wait until every delivery is acked or dead."""

    def settled() -> bool:
        done = running.broker.deliveries(subscription="jobs", state="acked")
        dead = running.broker.deliveries(subscription="jobs", state="dead")
        assert running.proc.poll() is None, running.output()[-3000:]
        assert len(done) + len(dead) == total, (len(done), len(dead))
        return True

    eventually(settled, timeout_s=timeout_s, interval_s=0.1)


def assert_quarantined_alone(running, good_ids: list[str], poison_id: str, cause: str) -> None:
    broker = running.broker
    (poison,) = broker.deliveries(message_id=poison_id)
    poison = broker.delivery(poison.id)
    assert poison is not None
    assert poison.state == "dead"
    assert poison.dead_reason == "poison pill"
    assert poison.crashes == MAX_CRASHES
    charged = [c for c in (broker.crash(i) for i in poison.crash_ids) if c is not None]
    assert len(charged) >= MAX_CRASHES
    assert {c.cause for c in charged} == {cause}, [c.summary for c in charged]

    others = broker.deliveries(subscription="jobs", limit=10_000)
    innocents = [d for d in others if d.message_id != poison_id]
    assert len(innocents) == len(good_ids)
    assert all(d.state == "acked" for d in innocents), [d for d in innocents if d.state != "acked"]
    assert all(d.crashes == 0 for d in innocents)
    ran_ok = {row[0] for row in running.handler_runs() if row[2] == "ok"}
    assert set(good_ids) <= ran_ok


@pytest.mark.parametrize(
    ("mode", "cause", "frame"),
    [
        ("segfault", "segfault", "in act"),
        ("abort", "abort", "in act"),
        ("exit", "exit", None),  # os._exit runs no handler: there is no stack to capture
        ("hang", "timeout", "in act"),
        ("oom", "memory", "in act"),
    ],
)
def test_poison_is_quarantined_and_innocents_are_not_charged(
    fixture_app, run_app, db_url, mode, cause, frame
):
    good = 200 if mode == "segfault" else 60
    good_ids, poison_id = publish_batch(fixture_app, good, mode)
    # a short timeout for the hang; a long one elsewhere, so that slow page faults on a busy
    # machine never turn the memory bomb into a timeout
    running = run_app(db_url, "--workers", "2",
                      CRASHAPP_TIMEOUT="1.5" if mode == "hang" else "20")
    settle(running, good + 1, timeout_s=90)
    assert_quarantined_alone(running, good_ids, poison_id, cause)

    poison = running.broker.deliveries(message_id=poison_id)[0]
    record = running.broker.crash(running.broker.delivery(poison.id).crash_ids[-1])
    assert record is not None
    assert any(item.get("message_id") == poison_id for item in record.in_flight)
    if frame is not None:
        # the summary and the in-flight list name the crashing thread's delivery first
        assert record.in_flight[0]["message_id"] == poison_id, record.in_flight
        first_thread = record.traceback.split("\n\n")[0]
        assert "crashapp.py" in first_thread and frame in first_thread, record.traceback
    assert running.stop() == 0


def test_the_delivery_whose_thread_segfaulted_a_shared_process_is_charged_and_runs_last(
        fixture_app, run_app, db_url):
    """Three slow messages share a worker with one that segfaults half a second in. The
    crash dump names the segfaulting thread, so its delivery is charged that crash (it once
    was a plain suspect and took max_crashes more crashes, in the lane) and the lane runs
    the three innocents before it instead of after its restarts."""
    poison = fixture_app.publish("jobs", {"mode": "late-segfault", "seconds": 0.5})
    slow = [fixture_app.publish("jobs", {"mode": "slow", "seconds": 2}) for _ in range(3)]
    running = run_app(db_url, "--workers", "1", CRASHAPP_TIMEOUT="20")
    settle(running, 4, timeout_s=90)

    broker = running.broker
    (d,) = broker.deliveries(message_id=poison)
    dead = broker.delivery(d.id)
    assert dead is not None and (dead.state, dead.dead_reason) == ("dead", "poison pill")
    assert len(dead.crash_ids) == MAX_CRASHES  # the shared crash counted: 3, not 4
    first = broker.crash(dead.crash_ids[0])
    assert first is not None and len(first.in_flight) == 4, first.in_flight
    assert first.in_flight[0]["message_id"] == poison
    for message_id in slow:
        (s,) = broker.deliveries(message_id=message_id)
        assert (s.state, s.crashes) == ("acked", 0)
    # after the shared crash: the innocents ran (and finished) before the poison ran again
    runs = running.handler_runs()
    second_start = [i for i, r in enumerate(runs) if r[0] == poison][1]
    finished_at = {r[0]: i for i, r in enumerate(runs) if r[2] == "ok"}
    assert all(finished_at[m] < second_start for m in slow), runs
    assert running.stop() == 0


@pytest.mark.parametrize(("mode", "where"), [("hang", "wait_for_reply"),
                                             ("block", "block_the_loop")])
def test_an_async_handler_that_hangs_is_shown_where_it_awaits(fixture_app, run_app, db_url,
                                                              mode, where):
    """The thread of a hung async handler only shows its event loop in select(): the crash
    record of its timeout once pointed at selectors.py, not at the application. One that
    blocks its loop in sync code shows it in its thread's stack (its await chain, pillbox's
    own frame alone, was once shown first and named in the summary)."""
    hung = fixture_app.publish("async-jobs", {"mode": mode})
    running = run_app(db_url, "--workers", "1", CRASHAPP_TIMEOUT="1.5")
    (d,) = running.broker.deliveries(message_id=hung)

    def first_crash():
        delivery = running.broker.delivery(d.id)
        assert delivery is not None and delivery.crash_ids
        return running.broker.crash(delivery.crash_ids[0])

    record = eventually(first_crash, timeout_s=60)
    assert record.cause == "timeout"
    assert "crashapp.py:" in record.summary and f"in {where}" in record.summary, record.summary
    if mode == "hang":
        awaiting, _, rest = record.traceback.partition("\n\n")
        assert awaiting.startswith("Awaiting in thread 0x"), record.traceback
        assert "crashapp.py" in awaiting and "in wait_for_reply" in awaiting
        assert "in async_jobs" in awaiting
        assert rest.lstrip().startswith("Thread 0x")  # then the thread's own stack
        assert awaiting.count("  File ") == awaiting.count("\n")  # nothing mixed into it
    else:
        assert "Awaiting in thread" not in record.traceback, record.traceback
    assert running.stop() == 0


def test_worker_killed_from_outside_is_a_crash_of_cause_killed(fixture_app, run_app, db_url):
    message_id = fixture_app.publish("jobs", {"mode": "slow", "seconds": 30})
    running = run_app(db_url, "--workers", "1", CRASHAPP_TIMEOUT="60")

    def leased() -> int:
        deliveries = running.broker.deliveries(message_id=message_id, state="leased")
        assert len(deliveries) == 1
        return deliveries[0].id

    delivery_id = eventually(leased, timeout_s=30)
    started = eventually(lambda: [r for r in running.handler_runs() if r[2] == "start:slow"],
                         timeout_s=30)
    pid = int(started[0][3])
    os.kill(pid, signal.SIGKILL)

    def charged():
        delivery = running.broker.delivery(delivery_id)
        assert delivery is not None and delivery.crashes == 1
        return delivery

    delivery = eventually(charged, timeout_s=30)
    record = running.broker.crash(delivery.crash_ids[0])
    assert record is not None and record.cause == "killed"
    assert record.signal == signal.SIGKILL
    assert [item["delivery_id"] for item in record.in_flight] == [delivery_id]
    assert running.stop() == 0


def test_finished_work_never_runs_again_when_its_worker_crashes(fixture_app, run_app, db_url):
    """Workers lease ahead and ack finished work with their next pull. A crash in between
    must neither rerun what had finished (the supervisor acks it for the dead worker) nor
    charge what was only leased ahead (released)."""
    good_ids, poison_id = publish_batch(fixture_app, 300, "segfault")
    running = run_app(db_url, "--workers", "2", CRASHAPP_CONCURRENCY="1")
    settle(running, 301, timeout_s=90)
    assert_quarantined_alone(running, good_ids, poison_id, "segfault")

    starts = Counter(row[0] for row in running.handler_runs() if row[2] == "start:ok")
    assert set(starts) == set(good_ids)
    assert {message: n for message, n in starts.items() if n > 1} == {}
    assert running.stop() == 0


def test_several_poison_messages_at_once_are_all_quarantined_and_innocents_finish(
        fixture_app, run_app, db_url):
    """Ten segfaulting messages among 200. The isolation lane crashes on each of them by
    design; it once backed off 10 s per restart, so quarantine took minutes and innocents
    made suspects waited behind it. Crashes blamed on messages now restart at once."""
    poison = set()
    good = []
    for i in range(210):
        if i % 21 == 10:
            poison.add(fixture_app.publish("jobs", {"mode": "segfault", "i": i}))
        else:
            good.append(fixture_app.publish("jobs", {"mode": "ok", "i": i}))
    running = run_app(db_url, "--workers", "2")
    settle(running, 210, timeout_s=120)

    broker = running.broker
    dead = {d.message_id for d in broker.deliveries(subscription="jobs", state="dead")}
    assert dead == poison
    for message_id in poison:
        (d,) = broker.deliveries(message_id=message_id)
        assert d.dead_reason == "poison pill" and d.crashes == MAX_CRASHES
    acked = {d.message_id for d in broker.deliveries(subscription="jobs", state="acked")}
    assert acked == set(good)
    assert "crash.unstored" not in running.output()
    assert "restarting worker.lane in" not in running.output()
    assert running.stop() == 0


def test_work_leased_ahead_of_a_slow_handler_is_given_back_to_other_workers(
        fixture_app, run_app, db_url):
    # fast handlers first, so the workers lease ahead; then one slow handler with fewer
    # deliveries behind it than one worker drains in its 8 s even on a loaded machine
    # (150 behind it and 4 s once failed under load with nothing stranded)
    before = [fixture_app.publish("jobs", {"mode": "ok", "i": i}) for i in range(150)]
    slow = fixture_app.publish("jobs", {"mode": "slow", "seconds": 8})
    after = [fixture_app.publish("jobs", {"mode": "ok", "i": i}) for i in range(60)]
    running = run_app(db_url, "--workers", "2", CRASHAPP_CONCURRENCY="1", CRASHAPP_TIMEOUT="30")
    settle(running, 211, timeout_s=90)

    finished = [row[0] for row in running.handler_runs() if row[2] == "ok"]
    assert set(finished) == {*before, slow, *after}
    # the slow handler's worker gave back what it had leased ahead; the other worker ran it
    # once: a worker that leased ahead again right after giving back held the leases from
    # the other worker in a lease/give-back churn (50 give-backs on PostgreSQL) until the
    # slow handler ended, and on a loaded CI machine 32 deliveries waited behind it
    assert running.output().count("gave back") == 1
    assert finished.index(slow) == len(finished) - 1, "a delivery waited behind the slow one"
    assert running.stop() == 0
