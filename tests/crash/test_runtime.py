"""The supervised runtime's other promises: handler failures are retried then dead with the
traceback kept, thread errors are recorded with their delivery, nothing is orphaned, and
SIGTERM drains without losing anything."""

from __future__ import annotations

import os
import signal
import socket
import time

import psutil
import pytest

from helpers import eventually

pytestmark = pytest.mark.crash


def test_handler_exception_is_retried_then_dead_with_traceback(fixture_app, run_app, db_url):
    message_id = fixture_app.publish("jobs", {"mode": "raise"})
    async_id = fixture_app.publish("async-jobs", {"mode": "raise"})
    ok_id = fixture_app.publish("async-jobs", {"mode": "ok"})
    running = run_app(db_url, "--workers", "1")

    def dead(mid: str):
        deliveries = running.broker.deliveries(message_id=mid, state="dead")
        assert len(deliveries) == 1
        return deliveries[0]

    delivery = eventually(lambda: dead(message_id), timeout_s=30)
    assert delivery.dead_reason == "max attempts"
    assert delivery.attempt == 3  # the fixture's max_attempts
    assert delivery.crashes == 0
    assert "ValueError: bad payload" in delivery.last_error
    assert 'crashapp.py", line' in delivery.last_error
    async_dead = eventually(lambda: dead(async_id), timeout_s=30)
    assert "KeyError" in async_dead.last_error and async_dead.attempt == 2
    eventually(lambda: running.broker.deliveries(message_id=ok_id, state="acked"), timeout_s=30)
    failures = running.broker.events(kind="failed")
    assert sum(1 for e in failures if e["message_id"] == message_id) == 3
    assert running.broker.crashes() == []  # exceptions are failures, never crashes
    assert running.stop() == 0


def test_a_handler_raising_keyboard_interrupt_fails_like_any_exception(
    fixture_app, run_app, db_url
):
    """It once killed the slot thread: the subscription (concurrency 1) was wedged for good,
    the delivery neither failed nor dead, and no timeout fired."""
    bad = fixture_app.publish("jobs", {"mode": "interrupt"})
    good = [fixture_app.publish("jobs", {"mode": "ok", "i": i}) for i in range(3)]
    running = run_app(db_url, "--workers", "1", CRASHAPP_CONCURRENCY="1")

    def dead():
        deliveries = running.broker.deliveries(message_id=bad, state="dead")
        assert len(deliveries) == 1
        return deliveries[0]

    delivery = eventually(dead, timeout_s=30)
    assert delivery.dead_reason == "max attempts" and delivery.attempt == 3
    assert "KeyboardInterrupt: handler raised KeyboardInterrupt" in delivery.last_error
    eventually(lambda: len(running.broker.deliveries(subscription="jobs", state="acked"))
               == len(good), timeout_s=30)
    assert running.broker.crashes() == []
    assert running.stop() == 0


def test_exception_in_a_handler_thread_is_recorded_with_its_delivery(fixture_app, run_app,
                                                                     db_url):
    message_id = fixture_app.publish("jobs", {"mode": "thread"})
    running = run_app(db_url, "--workers", "1")

    def recorded():
        events = running.broker.events(kind="thread_error")
        assert len(events) == 1
        return events[0]

    event = eventually(recorded, timeout_s=30)
    delivery = running.broker.deliveries(message_id=message_id)[0]
    assert event["delivery_id"] == delivery.id
    assert event["message_id"] == message_id
    assert "RuntimeError: library thread died" in event["detail"]
    assert "library-thread" in event["detail"]
    eventually(lambda: running.broker.deliveries(message_id=message_id, state="acked"),
               timeout_s=30)
    assert running.stop() == 0


def test_a_crashed_workers_grandchildren_are_killed(fixture_app, run_app, db_url):
    fixture_app.publish("jobs", {"mode": "spawn"})
    running = run_app(db_url, "--workers", "1")
    spawned = eventually(lambda: [r for r in running.handler_runs()
                                  if r[2].startswith("spawned:")], timeout_s=30)
    grandchild = int(spawned[0][2].split(":")[1])
    eventually(lambda: running.broker.crashes(), timeout_s=30)

    def gone() -> bool:
        try:
            return psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    eventually(gone, timeout_s=10)
    assert running.stop() == 0


def test_killing_the_supervisor_leaves_no_orphans(fixture_app, run_app, db_url):
    running = run_app(db_url, "--workers", "2")
    children = eventually(lambda: len(running.children()) >= 3 and running.children(),
                          timeout_s=30)
    pids = [child.pid for child in children]
    running.proc.send_signal(signal.SIGKILL)
    running.proc.wait()

    def all_gone() -> bool:
        alive = [pid for pid in pids if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        assert alive == []
        return True

    eventually(all_gone, timeout_s=20)


def test_sigterm_drains_in_flight_work_and_loses_nothing(fixture_app, run_app, db_url):
    ids = [fixture_app.publish("jobs", {"mode": "slow", "seconds": 0.5}) for _ in range(12)]
    running = run_app(db_url, "--workers", "1")
    eventually(lambda: running.broker.deliveries(subscription="jobs", state="leased"),
               timeout_s=30)
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=60) == 0
    deliveries = running.broker.deliveries(subscription="jobs")
    assert sorted(d.message_id for d in deliveries) == sorted(ids)
    states = {d.state for d in deliveries}
    assert states <= {"acked", "available"}, states
    assert "acked" in states  # the in-flight handlers were allowed to finish
    assert all(d.crashes == 0 for d in deliveries)
    for delivery in deliveries:
        if delivery.state == "available":
            assert delivery.attempt == 0  # released without an attempt penalty
    assert running.broker.crashes() == []
    running.stop()


def test_what_a_child_killed_at_the_stop_deadline_held_is_released_at_once(
        fixture_app, run_app, db_url):
    """A handler frozen in native code ignores SIGTERM's drain; the supervisor SIGKILLs it at
    the deadline. Its delivery, and the work it had leased ahead, used to stay leased for the
    lease time (30 s) after the app had stopped."""
    frozen = fixture_app.publish("jobs", {"mode": "freeze"})
    others = [fixture_app.publish("jobs", {"mode": "slow", "seconds": 5}) for _ in range(3)]
    running = run_app(db_url, "--workers", "1", "--shutdown-grace", "1", "--stall-timeout",
                      "300", CRASHAPP_TIMEOUT="300", CRASHAPP_CONCURRENCY="2")
    eventually(lambda: [r for r in running.handler_runs() if r[2] == "start:freeze"],
               timeout_s=30)
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=60) == 0
    deliveries = running.broker.deliveries(subscription="jobs")
    assert {d.state for d in deliveries} <= {"acked", "available"}, \
        [(d.message_id, d.state) for d in deliveries]
    (stuck,) = running.broker.deliveries(message_id=frozen)
    assert stuck.state == "available" and stuck.attempt == 0 and stuck.crashes == 0
    assert len(deliveries) == 1 + len(others)
    assert running.broker.crashes() == []  # a stop, not a crash
    running.stop()


def test_a_crash_while_stopping_is_still_a_crash(fixture_app, run_app, db_url):
    """A handler that segfaults during the drain was logged as 'stopped': no crash record,
    no charge, and its delivery left leased."""
    doomed = fixture_app.publish("jobs", {"mode": "late-segfault", "seconds": 1.5})
    running = run_app(db_url, "--workers", "1", "--shutdown-grace", "20")
    eventually(lambda: [r for r in running.handler_runs() if r[2] == "start:late-segfault"],
               timeout_s=30)
    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(timeout=60) == 0
    (record,) = running.broker.crashes()
    assert record.cause == "segfault"
    (delivery,) = running.broker.deliveries(message_id=doomed)
    assert delivery.crashes == 1 and delivery.state == "available"
    running.stop()


def test_supervisor_restarts_a_crashed_worker_at_once(fixture_app, run_app, db_url):
    running = run_app(db_url, "--workers", "1")
    first = eventually(lambda: [pid for pid, role in running.roles().items()
                                if role == "worker"], timeout_s=30)
    os.kill(first[0], signal.SIGKILL)

    def replaced():
        workers = [pid for pid, role in running.roles().items() if role == "worker"]
        assert workers and first[0] not in workers
        return workers

    eventually(replaced, timeout_s=10)
    message_id = fixture_app.publish("jobs", {"mode": "ok"})
    eventually(lambda: running.broker.deliveries(message_id=message_id, state="acked"),
               timeout_s=30)
    (record,) = running.broker.crashes()
    assert record.cause == "killed" and record.in_flight == []
    assert running.stop() == 0


def test_the_booted_standby_takes_a_dead_workers_place(fixture_app, run_app, db_url):
    """The standby (booted after the others were ready; named pb-standby once it stands
    by) becomes the worker: the dead worker's place is taken by a process that already
    existed, not by a fresh boot."""
    running = run_app(db_url, "--workers", "1")

    def booted():
        roles = running.roles()
        workers = [pid for pid, role in roles.items() if role == "worker"]
        standbys = [pid for pid, role in roles.items() if role == "standby"]
        assert len(workers) == 1 and len(standbys) == 1, roles
        return workers[0], standbys[0]

    worker, standby = eventually(booted, timeout_s=30)
    os.kill(worker, signal.SIGKILL)

    def promoted():
        roles = running.roles()
        assert roles.get(standby) == "worker", roles
        return True

    eventually(promoted, timeout_s=10)
    assert "child.promoted" in running.output()
    message_id = fixture_app.publish("jobs", {"mode": "ok"})
    eventually(lambda: running.broker.deliveries(message_id=message_id, state="acked"),
               timeout_s=30)
    eventually(lambda: len(booted()) == 2, timeout_s=30)  # and a new standby boots behind it
    assert running.stop() == 0


def test_a_frozen_worker_is_killed_as_stalled(fixture_app, run_app, db_url):
    """A native call holding the GIL freezes every thread: no heartbeat, so the supervisor
    kills the process (cause "stalled") well before the handler's 20 s timeout."""
    message_id = fixture_app.publish("jobs", {"mode": "freeze"})
    running = run_app(db_url, "--workers", "1", "--stall-timeout", "2", CRASHAPP_TIMEOUT="20")

    def stalled():
        records = running.broker.crashes()
        assert records and records[-1].cause == "stalled"
        return records[-1]

    record = eventually(stalled, timeout_s=30)
    assert [item["message_id"] for item in record.in_flight] == [message_id]
    assert "crashapp.py" in record.traceback.split("\n\n")[0]
    (delivery,) = running.broker.deliveries(message_id=message_id)
    assert delivery.crashes >= 1
    assert running.stop() == 0


def test_handler_durations_reach_the_database_while_workers_run(fixture_app, run_app, db_url):
    for _ in range(3):
        fixture_app.publish("jobs", {"mode": "slow", "seconds": 0.3})
    for _ in range(20):
        fixture_app.publish("jobs", {"mode": "ok"})
    fixture_app.publish("jobs", {"mode": "raise"})  # a handler that raised is timed too
    running = run_app(db_url, "--workers", "1")

    def observed() -> dict:
        buckets = running.broker.totals().durations.get("jobs", {})
        assert sum(n for n, _ in buckets.values()) >= 24, buckets
        return buckets

    buckets = eventually(observed, timeout_s=30, interval_s=0.5)  # flushed every 5 s
    slow = sum(n for le, (n, _) in buckets.items() if le != "+Inf" and 0.25 < float(le) <= 1)
    assert slow >= 3
    assert sum(seconds for _, seconds in buckets.values()) >= 0.9
    assert running.stop() == 0


def test_a_deleted_sqlite_file_is_reported_loudly(run_app, tmp_path):
    """Deleting the database file under a running app split the data silently: the
    processes kept the unlinked file and publishers created a new one."""
    db_url = f"sqlite:///{tmp_path}/doomed.db"
    running = run_app(db_url, "--workers", "1")
    eventually(lambda: "supervisor.started" in running.output(), timeout_s=30)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"doomed.db{suffix}").unlink(missing_ok=True)

    def reported() -> bool:
        assert "database.lost" in running.output()
        return True

    eventually(reported, timeout_s=30, interval_s=0.2)
    assert "was deleted or replaced while in use" in running.output()
    running.kill()


def test_leases_a_dead_worker_gains_after_its_post_mortem_are_swept(fixture_app, run_app,
                                                                     db_url):
    """On PostgreSQL a pull a worker sent just before it died can commit after the
    post-mortem read what it held; those leases waited 30 s for expiry. Simulated here by
    leasing for the dead worker's owner name right after its crash record is stored."""
    running = run_app(db_url, "--workers", "1")
    worker = eventually(lambda: [p for p, r in running.roles().items() if r == "worker"],
                        timeout_s=30)[0]
    os.kill(worker, signal.SIGKILL)
    eventually(lambda: running.broker.crashes(), timeout_s=30)
    # delayed an hour, so that no living worker takes it; leased "an hour from now" for the
    # dead owner, so that its lease would not expire for an hour either
    late = fixture_app.publish("jobs", {"mode": "ok"}, delay=3600)
    owner = f"{socket.gethostname()}:{worker}"
    (lease,) = running.broker.pull("jobs", owner, 1, 30.0, time.time() + 3601)
    assert lease.message.id == late

    def done():
        (delivery,) = running.broker.deliveries(message_id=late)
        assert delivery.state == "acked", delivery.state
        return True

    eventually(done, timeout_s=20)  # the lease would not expire for an hour
    assert "leases.swept" in running.output()
    assert running.stop() == 0
