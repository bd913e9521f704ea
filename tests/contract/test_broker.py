"""The broker contract: one suite, run against every engine (SQLite file, real PostgreSQL).

Times are explicit (`now=`) so every deadline and window is exact; the App-level tests use
the wall clock as the App does.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import Sub, crash_record, eventually
from pillbox import retry
from pillbox.app import App
from pillbox.broker import SQLBroker, open_broker, queries
from pillbox.errors import (
    ConfigError,
    DatabaseError,
    PayloadNotJSON,
    PayloadTooLarge,
    UnknownSubscription,
    UnknownTopic,
)
from pillbox.messages import Lease

T0 = 1_700_000_000.0
LEASE_S = 30.0


@pytest.fixture
def broker(db_url: str, open_brokers: Callable[..., SQLBroker]) -> SQLBroker:
    """Topic `orders` fans out to billing and shipping; `audit` has one subscription;
    `lonely` has none."""
    b = open_brokers(db_url)
    b.register(
        ["orders", "audit", "lonely"],
        [Sub("billing", "orders"), Sub("shipping", "orders"),
         Sub("audit-log", "audit", max_attempts=5, max_crashes=3)],
        T0,
    )
    return b


def publish(broker: SQLBroker, topic: str = "audit", payload: Any = None, now: float = T0,
            **kwargs: Any) -> str:
    return broker.publish(topic, json.dumps({"n": 1} if payload is None else payload), now,
                          **kwargs)


def pull(broker: SQLBroker, sub: str = "audit-log", owner: str = "w1", limit: int = 10,
         now: float = T0, lease_s: float = LEASE_S, acks: Sequence[Lease] = ()) -> list[Lease]:
    return broker.pull(sub, owner, limit, lease_s, now, acks=acks)


def one(broker: SQLBroker, **kwargs: Any) -> Lease:
    leases = pull(broker, limit=1, **kwargs)
    assert len(leases) == 1, leases
    return leases[0]


def delivery_id(broker: SQLBroker, message_id: str, sub: str = "audit-log") -> int:
    [found] = [d for d in broker.deliveries(message_id=message_id) if d.subscription == sub]
    return found.id


def state(broker: SQLBroker, did: int) -> str:
    found = broker.delivery(did)
    assert found is not None
    return found.state


# -- fan-out and leases ---------------------------------------------------------------------
def test_a_topic_fans_out_one_delivery_per_subscription(
        broker: SQLBroker, db_url: str, open_brokers: Callable[..., SQLBroker]) -> None:
    message_id = publish(broker, "orders", {"order": 7}, attributes={"tenant": "acme"})

    deliveries = broker.deliveries(message_id=message_id)
    assert sorted(d.subscription for d in deliveries) == ["billing", "shipping"]
    assert {d.state for d in deliveries} == {"available"}

    # Durable before publish returned: another connection (another process) sees it.
    other = open_brokers(db_url, migrate=False)
    [billing] = other.pull("billing", "w1", 10, LEASE_S, T0)
    [shipping] = other.pull("shipping", "w2", 10, LEASE_S, T0)
    for lease, sub in ((billing, "billing"), (shipping, "shipping")):
        assert lease.message.id == message_id
        assert lease.message.subscription == sub
        assert lease.message.topic == "orders"
        assert lease.message.payload == {"order": 7}
        assert lease.message.attributes == {"tenant": "acme"}
        assert lease.message.published_at == T0
    assert billing.delivery_id != shipping.delivery_id
    assert other.pull("billing", "w1", 10, LEASE_S, T0) == []
    assert pull(broker, "audit-log") == []


def test_publishing_to_a_topic_without_subscriptions_creates_no_delivery(
        broker: SQLBroker) -> None:
    message_id = publish(broker, "lonely")

    assert len(message_id) == 32
    assert broker.deliveries(message_id=message_id) == []
    assert all(s.backlog == 0 for s in broker.stats(T0))


def test_pull_leases_to_one_owner_with_a_fresh_token_and_deadline(broker: SQLBroker) -> None:
    ids = [publish(broker, payload={"i": i}, now=T0 + i) for i in range(5)]

    first = pull(broker, owner="w1", limit=2, now=T0 + 10)
    second = pull(broker, owner="w2", limit=10, now=T0 + 10, lease_s=5)

    assert [lease.message.id for lease in first] == ids[:2]
    assert sorted(lease.message.id for lease in second) == sorted(ids[2:])
    assert {lease.owner for lease in first} == {"w1"}
    assert {lease.owner for lease in second} == {"w2"}
    assert {lease.deadline for lease in first} == {T0 + 10 + LEASE_S}
    assert {lease.deadline for lease in second} == {T0 + 15}
    assert len({lease.token for lease in first} | {lease.token for lease in second}) == 2
    assert all(lease.message.attempt == 1 for lease in first + second)
    assert pull(broker, owner="w3", now=T0 + 10) == []
    assert {d.state for d in broker.deliveries(subscription="audit-log")} == {"leased"}


def test_pull_takes_the_oldest_available_first(broker: SQLBroker) -> None:
    late = publish(broker, now=T0 + 5)
    early = publish(broker, now=T0 + 1)

    assert one(broker, now=T0 + 10).message.id == early
    assert one(broker, now=T0 + 10).message.id == late


def test_ack_by_the_holder_finishes_the_delivery_once(broker: SQLBroker) -> None:
    publish(broker)
    lease = one(broker)

    assert broker.ack(lease, T0 + 1) is True
    assert broker.ack(lease, T0 + 2) is False
    done = broker.delivery(lease.delivery_id)
    assert done is not None
    assert (done.state, done.finished_at, done.attempt) == ("acked", T0 + 1, 1)
    assert pull(broker, now=T0 + 3600) == []
    assert broker.rescue_expired(T0 + 3600) == 0


def test_ack_many_acks_held_leases_in_one_go_and_reports_each(broker: SQLBroker) -> None:
    for i in range(3):
        publish(broker, now=T0 + i)
    a, b, c = pull(broker, limit=3, now=T0 + 5)
    assert broker.ack(b, T0 + 6) is True

    assert broker.ack_many([a, b, c], T0 + 7) == [True, False, True]
    assert {state(broker, x.delivery_id) for x in (a, b, c)} == {"acked"}
    assert broker.ack_many([a, c], T0 + 8) == [False, False]


def test_a_pull_can_ack_finished_leases_in_the_same_transaction(broker: SQLBroker) -> None:
    for i in range(2):
        publish(broker, now=T0 + i)
    first = pull(broker, limit=2, now=T0 + 5, lease_s=10)
    # the second of them expires and goes to another worker meanwhile
    broker.extend([(first[0].delivery_id, first[0].token)], T0 + 100)
    assert broker.rescue_expired(T0 + 16) == 1
    taken = one(broker, owner="w2", now=T0 + 16)
    assert taken.delivery_id == first[1].delivery_id
    publish(broker, now=T0 + 16)
    publish(broker, now=T0 + 16)

    nxt = pull(broker, limit=5, now=T0 + 17, acks=first)

    assert [x.message.attempt for x in nxt] == [1, 1]
    assert {x.delivery_id for x in nxt}.isdisjoint({y.delivery_id for y in first})
    assert state(broker, first[0].delivery_id) == "acked"
    assert state(broker, taken.delivery_id) == "leased"  # the lost lease's ack did nothing
    assert broker.ack(taken, T0 + 18) is True
    assert pull(broker, now=T0 + 19, acks=nxt) == []
    assert {d.state for d in broker.deliveries(subscription="audit-log")} == {"acked"}


def test_an_expired_lease_taken_over_cannot_be_acked_nacked_or_extended_by_its_old_holder(
        broker: SQLBroker) -> None:
    # Given a lease that expired and was rescued and pulled by another worker
    publish(broker)
    old = one(broker, owner="w1", now=T0, lease_s=10)
    assert broker.rescue_expired(T0 + 11) == 1
    new = one(broker, owner="w2", now=T0 + 12, lease_s=10)
    assert new.delivery_id == old.delivery_id
    assert new.token != old.token
    assert new.message.attempt == 2

    # When the old holder tries to finish or keep it, Then nothing it does counts
    assert broker.ack(old, T0 + 13) is False
    assert broker.nack(old, "late failure", T0 + 14, T0 + 13) is False
    assert broker.nack(old, "late failure", None, T0 + 13) is False
    assert broker.extend([(old.delivery_id, old.token)], T0 + 5000) == 0
    assert broker.release([(old.delivery_id, old.token)], T0 + 13) == 0
    broker.record_crash(crash_record(T0 + 13), [(old.delivery_id, old.token, "culprit")])

    held = broker.delivery(new.delivery_id)
    assert held is not None
    assert (held.state, held.attempt, held.crashes, held.suspect) == ("leased", 2, 0, False)
    assert (held.last_error, held.dead_reason, held.crash_ids) == (None, None, [])
    assert broker.events(kind="failed") == []
    # the old holder's extend did not move the new lease's deadline (T0 + 22)
    assert broker.rescue_expired(T0 + 21) == 0
    assert broker.ack(new, T0 + 21) is True


def test_extend_by_the_holder_keeps_the_lease_from_being_rescued(broker: SQLBroker) -> None:
    publish(broker)
    lease = one(broker, now=T0, lease_s=10)

    assert broker.extend([(lease.delivery_id, lease.token)], T0 + 100) == 1

    assert broker.rescue_expired(T0 + 50) == 0
    assert state(broker, lease.delivery_id) == "leased"
    assert broker.rescue_expired(T0 + 101) == 1
    assert state(broker, lease.delivery_id) == "available"


def test_rescue_expired_redelivers_only_expired_leases_with_the_next_attempt(
        broker: SQLBroker) -> None:
    first = publish(broker, now=T0)
    publish(broker, now=T0 + 1)
    short = one(broker, now=T0 + 2, lease_s=5)
    long = one(broker, now=T0 + 2, lease_s=500)

    assert broker.rescue_expired(T0 + 7) == 0  # deadline T0+7 is not yet past
    assert broker.rescue_expired(T0 + 8) == 1
    assert state(broker, long.delivery_id) == "leased"

    again = one(broker, now=T0 + 8)
    assert again.message.id == first == short.message.id
    assert again.message.attempt == 2
    assert broker.ack(again, T0 + 9) is True


def test_release_gives_a_lease_back_without_charging_an_attempt(broker: SQLBroker) -> None:
    publish(broker)
    lease = one(broker)

    assert broker.release([(lease.delivery_id, lease.token)], T0 + 1) == 1
    assert broker.release([(lease.delivery_id, lease.token)], T0 + 1) == 0

    again = one(broker, now=T0 + 1)
    assert again.message.attempt == 1
    assert again.token != lease.token


# -- failures --------------------------------------------------------------------------------
def test_nack_with_retry_at_redelivers_from_then_and_keeps_the_error(broker: SQLBroker) -> None:
    publish(broker)
    lease = one(broker)

    assert broker.nack(lease, "ValueError: bad", T0 + 60, T0 + 1) is True

    failed = broker.delivery(lease.delivery_id)
    assert failed is not None
    assert (failed.state, failed.available_at, failed.last_error) == (
        "available", T0 + 60, "ValueError: bad")
    assert pull(broker, now=T0 + 59.9) == []
    again = one(broker, now=T0 + 60)
    assert again.message.attempt == 2
    assert [e["detail"] for e in broker.events(kind="failed")] == ["ValueError: bad"]


def test_a_failing_delivery_is_dead_after_max_attempts_with_its_last_error(
        broker: SQLBroker) -> None:
    publish(broker, "orders")
    now = T0
    attempts = []
    while (leases := pull(broker, "billing", now=now)):
        [lease] = leases
        attempts.append(lease.message.attempt)
        decision = retry.decide(lease.message.attempt, 3, 1.0, 10.0, now)
        assert broker.nack(lease, f"boom {lease.message.attempt}", decision.retry_at, now)
        now += 20

    assert attempts == [1, 2, 3]
    [dead] = broker.dead("billing")
    assert (dead.state, dead.attempt, dead.dead_reason, dead.last_error) == (
        "dead", 3, "max attempts", "boom 3")
    assert dead.finished_at == T0 + 40
    assert len(broker.events(kind="failed")) == 3
    assert [e["detail"] for e in broker.events(kind="dead")] == ["max attempts"]
    # the shipping delivery of the same message is untouched
    assert [lease.message.attempt for lease in pull(broker, "shipping", now=now)] == [1]


# -- crashes ---------------------------------------------------------------------------------
def test_a_culprit_is_isolated_then_dead_as_a_poison_pill_at_max_crashes(
        broker: SQLBroker) -> None:
    publish(broker, "orders")  # billing: max_crashes=2
    lease = one(broker, sub="billing")

    crash1 = broker.record_crash(crash_record(T0 + 1, "first death"),
                                 [(lease.delivery_id, lease.token, "culprit")])
    after1 = broker.delivery(lease.delivery_id)
    assert after1 is not None
    assert (after1.state, after1.crashes, after1.suspect, after1.attempt) == (
        "available", 1, True, 1)
    assert after1.last_error == f"crash #{crash1}: first death"
    assert pull(broker, "billing", now=T0 + 2) == []  # only the isolation lane runs it

    [isolated] = broker.pull_suspect(["billing"], "lane", LEASE_S, T0 + 2)
    assert isolated.delivery_id == lease.delivery_id
    assert isolated.message.attempt == 2
    crash2 = broker.record_crash(crash_record(T0 + 3, "second death"),
                                 [(isolated.delivery_id, isolated.token, "culprit")])

    dead = broker.delivery(lease.delivery_id)
    assert dead is not None
    assert (dead.state, dead.dead_reason, dead.crashes, dead.finished_at) == (
        "dead", "poison pill", 2, T0 + 3)
    assert dead.crash_ids == [crash1, crash2]
    assert broker.pull_suspect(["billing"], "lane", LEASE_S, T0 + 4) == []
    assert [d.id for d in broker.dead("billing")] == [lease.delivery_id]
    assert [e["detail"] for e in broker.events(kind="dead")] == ["poison pill"]
    assert len(broker.events(kind="crashed")) == 2
    record = broker.crash(crash2)
    assert record is not None
    assert (record.id, record.summary, record.cause, record.signal, record.pid) == (
        crash2, "second death", "segfault", 11, 4242)
    assert record.in_flight == [{"delivery_id": 0}]
    assert [c.id for c in broker.crashes()] == [crash2, crash1]


def test_finished_work_of_a_dead_worker_is_acked_whatever_the_order_of_roles(
        broker: SQLBroker) -> None:
    """A finished delivery (handler succeeded, ack pending) is acked at the crash. With it
    last in the roles, SQLite once refused the commit ("SQL statements in progress": the ack's
    RETURNING rows were never read) and the whole crash record was lost."""
    for i in range(3):
        publish(broker, payload={"i": i}, now=T0 + i)
    a, b, c = pull(broker, limit=3, now=T0 + 5)

    broker.record_crash(crash_record(T0 + 6),
                        [(a.delivery_id, a.token, "culprit"),
                         (b.delivery_id, b.token, "released"),
                         (c.delivery_id, c.token, "finished")])

    assert state(broker, c.delivery_id) == "acked"
    assert state(broker, b.delivery_id) == "available"
    culprit = broker.delivery(a.delivery_id)
    assert culprit is not None and culprit.crashes == 1
    assert len(broker.crashes()) == 1


def test_suspects_lose_no_attempt_run_alone_and_released_deliveries_simply_go_back(
        broker: SQLBroker) -> None:
    for i in range(3):
        publish(broker, payload={"i": i}, now=T0 + i)
    a, b, c = pull(broker, limit=3, now=T0 + 5)

    crash_id = broker.record_crash(
        crash_record(T0 + 6),
        [(a.delivery_id, a.token, "suspect"), (b.delivery_id, b.token, "suspect"),
         (c.delivery_id, c.token, "released")])

    for suspect in (a, b):
        d = broker.delivery(suspect.delivery_id)
        assert d is not None
        assert (d.state, d.suspect, d.attempt, d.crashes) == ("available", True, 0, 0)
        assert d.crash_ids == [crash_id]
    released = broker.delivery(c.delivery_id)
    assert released is not None
    assert (released.state, released.suspect, released.attempt, released.crashes) == (
        "available", False, 0, 0)

    # the normal lane sees only the released delivery, with its attempt not charged
    [normal] = pull(broker, now=T0 + 7)
    assert (normal.delivery_id, normal.message.attempt) == (c.delivery_id, 1)
    # suspects come out of the isolation lane one at a time
    first = broker.pull_suspect(["audit-log"], "lane", LEASE_S, T0 + 7)
    assert [s.delivery_id for s in first] == [a.delivery_id]
    assert first[0].message.attempt == 1
    assert broker.pull_suspect(["billing"], "lane", LEASE_S, T0 + 7) == []
    assert [s.delivery_id for s in broker.pull_suspect(["audit-log"], "lane", LEASE_S,
                                                       T0 + 7)] == [b.delivery_id]
    assert broker.events(kind="crashed") == []  # nobody was charged


def test_the_prime_suspect_is_charged_the_crash_but_only_a_crash_alone_quarantines(
        broker: SQLBroker) -> None:
    """The delivery whose thread crashed a shared process counts the crash (billing:
    max_crashes=2) but is never made dead by it, and the lane runs it after the innocents."""
    for i in range(2):
        publish(broker, "orders", payload={"i": i}, now=T0 + i)
    prime, other = pull(broker, "billing", limit=2, now=T0 + 5)
    crash_id = broker.record_crash(crash_record(T0 + 6, "shared death"),
                                   [(prime.delivery_id, prime.token, "prime"),
                                    (other.delivery_id, other.token, "suspect")])

    p = broker.delivery(prime.delivery_id)
    o = broker.delivery(other.delivery_id)
    assert p is not None and o is not None
    assert (p.state, p.suspect, p.crashes, p.attempt) == ("available", True, 1, 0)
    assert p.last_error == f"crash #{crash_id}: shared death"
    assert p.crash_ids == o.crash_ids == [crash_id]
    assert (o.state, o.suspect, o.crashes, o.attempt) == ("available", True, 0, 0)
    assert [e["delivery_id"] for e in broker.events(kind="crashed")] == [prime.delivery_id]

    first, second = (broker.pull_suspect(["billing"], "lane", LEASE_S, T0 + 7 + i)[0]
                     for i in range(2))
    assert [first.delivery_id, second.delivery_id] == [other.delivery_id, prime.delivery_id]
    # charged again in a shared crash, it stays short of max_crashes: still a suspect
    broker.record_crash(crash_record(T0 + 9), [(second.delivery_id, second.token, "prime")])
    again = broker.delivery(prime.delivery_id)
    assert again is not None
    assert (again.state, again.crashes, again.dead_reason) == ("available", 1, None)
    assert broker.events(kind="dead") == []


def test_the_lane_runs_suspects_that_never_crashed_it_before_repeat_offenders(
        broker: SQLBroker) -> None:
    """A poison message crashes the isolation lane max_crashes times; innocents made
    suspects by a later worker crash go first instead of waiting behind each restart."""
    for i in range(3):
        publish(broker, payload={"i": i}, now=T0 + i)
    poison, a, b = pull(broker, limit=3, now=T0 + 5)
    broker.record_crash(crash_record(T0 + 6), [(poison.delivery_id, poison.token, "suspect")])
    [isolated] = broker.pull_suspect(["audit-log"], "lane", LEASE_S, T0 + 7)
    broker.record_crash(crash_record(T0 + 8), [(isolated.delivery_id, isolated.token,
                                                "culprit")])
    broker.record_crash(crash_record(T0 + 9), [(a.delivery_id, a.token, "suspect"),
                                               (b.delivery_id, b.token, "suspect")])

    order = [broker.pull_suspect(["audit-log"], "lane", LEASE_S, T0 + 10 + i)[0].delivery_id
             for i in range(3)]
    assert order == [a.delivery_id, b.delivery_id, poison.delivery_id]


# -- operator actions ------------------------------------------------------------------------
def test_a_paused_subscription_stores_publishes_but_hands_nothing_out(
        broker: SQLBroker) -> None:
    publish(broker, "orders")
    lease = one(broker, sub="billing")
    broker.record_crash(crash_record(T0 + 1), [(lease.delivery_id, lease.token, "suspect")])

    broker.set_paused("billing", True)
    message_id = publish(broker, "orders", now=T0 + 2)

    assert broker.paused() == {"billing"}
    assert state(broker, delivery_id(broker, message_id, "billing")) == "available"
    assert pull(broker, "billing", now=T0 + 3) == []
    assert broker.pull_suspect(["billing"], "lane", LEASE_S, T0 + 3) == []
    assert len(pull(broker, "shipping", now=T0 + 3)) == 2  # other subscriptions go on
    assert {s.name: s.paused for s in broker.stats(T0 + 3)}["billing"] is True
    # a process restarting and re-declaring its subscriptions does not unpause
    broker.register(["orders"], [Sub("billing", "orders")], T0 + 3)
    assert broker.paused() == {"billing"}

    broker.set_paused("billing", False)
    assert broker.paused() == set()
    assert [x.message.id for x in pull(broker, "billing", now=T0 + 4)] == [message_id]
    assert len(broker.pull_suspect(["billing"], "lane", LEASE_S, T0 + 4)) == 1


def test_purge_by_time_and_by_ids_with_a_dry_run_and_never_in_flight(
        broker: SQLBroker) -> None:
    ids = [publish(broker, now=T0 + i) for i in range(6)]
    leased = one(broker, now=T0 + 10)  # ids[0]

    assert broker.purge("audit-log", before=T0 + 3, dry_run=True) == 2
    assert len(broker.deliveries(subscription="audit-log")) == 6
    assert broker.purge("audit-log", before=T0 + 3) == 2  # ids[1], ids[2]
    assert broker.purge("audit-log", ids=[ids[3]]) == 1  # by message id
    assert broker.purge("audit-log", ids=[str(delivery_id(broker, ids[4]))]) == 1  # delivery id
    assert broker.purge("audit-log", ids=[]) == 0
    assert broker.purge("audit-log", ids=[ids[0]]) == 0  # in flight

    assert [d.message_id for d in broker.deliveries(subscription="audit-log")] == [
        ids[0], ids[5]]
    assert broker.ack(leased, T0 + 11) is True


def test_purge_refuses_to_remove_everything_unless_told(broker: SQLBroker) -> None:
    for i in range(4):
        publish(broker, "orders", now=T0 + i)
    acked, dead, leased = pull(broker, "billing", limit=3, now=T0 + 5)
    broker.ack(acked, T0 + 6)
    broker.nack(dead, "fatal", None, T0 + 6)

    with pytest.raises(ValueError, match="everything=True"):
        broker.purge("billing")
    assert broker.purge("billing", everything=True, dry_run=True) == 2
    assert broker.purge("billing", everything=True) == 2  # the dead and the available one

    left = {d.id: d.state for d in broker.deliveries(subscription="billing")}
    assert left == {acked.delivery_id: "acked", leased.delivery_id: "leased"}
    assert len(broker.deliveries(subscription="shipping")) == 4
    with pytest.raises(UnknownSubscription):
        broker.purge("biling", everything=True)


def test_a_dead_delivery_can_be_replayed_from_scratch(broker: SQLBroker) -> None:
    publish(broker, "orders")
    lease = one(broker, sub="billing")
    broker.nack(lease, "fatal", None, T0 + 1)

    assert broker.replay(lease.delivery_id, T0 + 100) is True
    assert broker.replay(lease.delivery_id, T0 + 100) is False  # no longer dead

    replayed = broker.delivery(lease.delivery_id)
    assert replayed is not None
    assert (replayed.state, replayed.attempt, replayed.crashes, replayed.dead_reason) == (
        "available", 0, 0, None)
    assert replayed.available_at == T0 + 100
    assert broker.dead() == []
    again = one(broker, sub="billing", now=T0 + 100)
    assert (again.delivery_id, again.message.attempt) == (lease.delivery_id, 1)
    assert broker.replay(again.delivery_id, T0 + 101) is False  # leased
    broker.ack(again, T0 + 101)
    assert broker.replay(again.delivery_id, T0 + 102) is False  # acked
    assert state(broker, again.delivery_id) == "acked"


def test_a_replayed_poison_pill_stays_in_the_isolation_lane(broker: SQLBroker) -> None:
    publish(broker, "orders")
    lease = one(broker, sub="billing")
    broker.record_crash(crash_record(T0 + 1), [(lease.delivery_id, lease.token, "culprit")])
    [lease] = broker.pull_suspect(["billing"], "lane", LEASE_S, T0 + 2)
    broker.record_crash(crash_record(T0 + 3), [(lease.delivery_id, lease.token, "culprit")])
    assert state(broker, lease.delivery_id) == "dead"

    assert broker.replay(lease.delivery_id, T0 + 4) is True

    assert pull(broker, "billing", now=T0 + 5) == []
    [isolated] = broker.pull_suspect(["billing"], "lane", LEASE_S, T0 + 5)
    assert isolated.delivery_id == lease.delivery_id


def test_drop_deletes_only_dead_deliveries(broker: SQLBroker) -> None:
    publish(broker, "orders")
    lease = one(broker, sub="billing")
    other = one(broker, sub="shipping")

    assert broker.drop(lease.delivery_id) is False  # leased
    broker.nack(lease, "fatal", None, T0 + 1)
    assert broker.drop(lease.delivery_id) is True
    assert broker.drop(lease.delivery_id) is False

    assert broker.delivery(lease.delivery_id) is None
    assert broker.dead() == []
    assert state(broker, other.delivery_id) == "leased"


def test_stats_count_backlog_in_flight_dead_and_recent_outcomes(broker: SQLBroker) -> None:
    ids = [publish(broker, payload={"i": i}, now=T0 + i) for i in range(5)]
    m0, m1 = pull(broker, limit=2, now=T0 + 10)
    broker.ack(m0, T0 + 11)
    broker.nack(m1, "retry me", T0 + 100, T0 + 12)
    m2 = one(broker, now=T0 + 13)
    broker.record_crash(crash_record(T0 + 14), [(m2.delivery_id, m2.token, "culprit")])
    m3 = one(broker, now=T0 + 15)
    broker.nack(m3, "fatal", None, T0 + 16)
    m4 = one(broker, now=T0 + 17)
    assert [m.message.id for m in (m0, m1, m2, m3, m4)] == ids

    stats = {s.name: s for s in broker.stats(T0 + 20)}
    audit = stats["audit-log"]
    assert (audit.topic, audit.paused) == ("audit", False)
    assert (audit.backlog, audit.in_flight, audit.dead) == (2, 1, 1)
    assert audit.oldest_unacked_age_s == 19.0  # m1, published at T0 + 1
    assert (audit.acked_5m, audit.failed_5m, audit.crashed_5m) == (1, 2, 1)
    assert (audit.acked_1h, audit.failed_1h, audit.crashed_1h, audit.dead_1h) == (1, 2, 1, 1)
    assert sorted(stats) == ["audit-log", "billing", "shipping"]
    assert (stats["billing"].backlog, stats["billing"].oldest_unacked_age_s) == (0, None)

    later = {s.name: s for s in broker.stats(T0 + 20 + 301)}["audit-log"]
    assert (later.acked_5m, later.failed_5m, later.crashed_5m) == (0, 0, 0)
    assert (later.acked_1h, later.failed_1h, later.crashed_1h, later.dead_1h) == (1, 2, 1, 1)
    assert later.oldest_unacked_age_s == 320.0
    much_later = {s.name: s for s in broker.stats(T0 + 4000)}["audit-log"]
    assert (much_later.acked_1h, much_later.failed_1h, much_later.dead_1h) == (0, 0, 0)
    assert (much_later.backlog, much_later.in_flight, much_later.dead) == (2, 1, 1)


def test_a_delayed_publish_is_not_handed_out_before_its_time(broker: SQLBroker) -> None:
    message_id = publish(broker, now=T0, delay_s=30)

    assert pull(broker, now=T0 + 29.9) == []
    [lease] = pull(broker, now=T0 + 30)
    assert lease.message.id == message_id
    assert lease.message.published_at == T0


def test_unknown_subscription_names_are_refused_with_the_nearest_name(
        broker: SQLBroker) -> None:
    for action in (lambda: broker.set_paused("biling", True),
                   lambda: broker.purge("biling", everything=True),
                   lambda: broker.dead("biling"),
                   lambda: broker.check_subscription("biling")):
        with pytest.raises(UnknownSubscription, match="did you mean 'billing'"):
            action()
    assert broker.paused() == set()


# -- through the App ---------------------------------------------------------------------------
def declare(app: App) -> App:
    @app.subscribe("user.joined", name="welcome", max_attempts=2, max_crashes=2)
    def welcome(message: Any) -> None:
        """Does nothing: these tests drive the broker by hand."""

    return app


def test_app_publish_stores_payload_attributes_and_delay(
        make_app: Callable[..., App]) -> None:
    app = declare(make_app())

    now_id = app.publish("user.joined", {"user": "ada", "tags": ["x"]},
                         attributes={"source": "web"})
    later_id = app.publish("user.joined", {"user": "bob"}, delay=3600)

    [lease] = app.broker.pull("welcome", "w1", 10, LEASE_S, time.time())
    assert lease.message.id == now_id
    assert (lease.message.payload, lease.message.attributes) == (
        {"user": "ada", "tags": ["x"]}, {"source": "web"})
    [later] = app.broker.pull("welcome", "w1", 10, LEASE_S, time.time() + 3601)
    assert later.message.id == later_id


def test_a_non_json_payload_is_refused_naming_its_type_and_path(
        make_app: Callable[..., App]) -> None:
    app = declare(make_app())
    circular: dict[str, Any] = {"user": "ada"}
    circular["me"] = circular

    with pytest.raises(PayloadNotJSON, match=r"set at \$\.user\.tags\[1\]"):
        app.publish("user.joined", {"user": {"tags": ["a", {1, 2}]}})
    with pytest.raises(PayloadNotJSON, match=r"datetime at \$\.when"):
        app.publish("user.joined", {"when": datetime.now()})
    with pytest.raises(PayloadNotJSON, match=r"float at \$\.score"):
        app.publish("user.joined", {"score": float("nan")})
    with pytest.raises(PayloadNotJSON, match=r"circular reference"):
        app.publish("user.joined", circular)
    assert app.broker.deliveries() == []


def test_an_oversized_payload_is_refused_giving_both_sizes(
        make_app: Callable[..., App]) -> None:
    app = declare(make_app(max_payload_bytes=64))

    with pytest.raises(PayloadTooLarge) as refused:
        app.publish("user.joined", "x" * 100)

    assert "102 bytes" in str(refused.value)
    assert "64 bytes" in str(refused.value)
    assert app.broker.deliveries() == []
    app.publish("user.joined", "x" * 62)  # exactly the limit is fine
    assert len(app.broker.deliveries()) == 1


def test_an_unknown_topic_is_refused_suggesting_the_nearest_name(
        make_app: Callable[..., App]) -> None:
    app = declare(make_app())

    with pytest.raises(UnknownTopic, match=r"did you mean 'user\.joined'"):
        app.publish("user.joind", {"user": "ada"})
    with pytest.raises(UnknownSubscription, match="did you mean 'welcome'"):
        app.handler("welcom")
    assert app.broker.deliveries() == []


def _connect(db_url: str) -> Any:
    """The app's own connection to the same database (psycopg, or sqlite3 for a file)."""
    if db_url.startswith("sqlite:///"):
        return sqlite3.connect(db_url[len("sqlite:///"):])
    return psycopg.connect(db_url)


def test_a_transactional_publish_exists_if_and_only_if_the_transaction_commits(
        make_app: Callable[..., App], db_url: str) -> None:
    app = declare(make_app())
    broker = app.broker
    conn = _connect(db_url)
    try:
        conn.execute("CREATE TABLE signups (name TEXT)")
        conn.commit()

        # Given a business write and a publish in one transaction that rolls back
        conn.execute("INSERT INTO signups VALUES ('ada')")
        app.publish("user.joined", {"user": "ada"}, conn=conn)
        conn.rollback()
        # Then neither exists
        assert broker.deliveries() == []
        assert conn.execute("SELECT count(*) FROM signups").fetchone() == (0,)

        # Given the same in a transaction that commits
        conn.execute("INSERT INTO signups VALUES ('bob')")
        message_id = app.publish("user.joined", {"user": "bob"}, conn=conn,
                                 attributes={"via": "signup"})
        # (invisible to the broker until the commit)
        assert broker.pull("welcome", "w1", 10, LEASE_S, time.time()) == []
        conn.commit()
        # Then both exist
        [lease] = broker.pull("welcome", "w1", 10, LEASE_S, time.time())
        assert (lease.message.id, lease.message.payload, lease.message.attributes) == (
            message_id, {"user": "bob"}, {"via": "signup"})
        assert conn.execute("SELECT name FROM signups").fetchall() == [("bob",)]
    finally:
        conn.close()


def test_a_transactional_publish_refuses_a_connection_to_another_database(
        make_app: Callable[..., App], databases: Any, db_url: str,
        open_brokers: Callable[..., SQLBroker]) -> None:
    """It once wrote the message into whatever database the connection reached, where the
    app never looks, and said nothing."""
    app = declare(make_app())
    other_url = databases.new()
    other = open_brokers(other_url)  # has pillbox's tables too
    other.register(["user.joined"], [Sub("welcome", "user.joined")], T0)
    conn = _connect(other_url)
    try:
        with pytest.raises(ConfigError, match="would never be seen"):
            app.publish("user.joined", {"user": "ada"}, conn=conn)
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(ConfigError, match="conn= must be a"):
        app.publish("user.joined", {"user": "ada"}, conn="dbname=test")
    with pytest.raises(ConfigError, match="topic must be a str"):
        app.publish(None, {"user": "ada"})  # type: ignore[arg-type]
    assert other.deliveries() == [] and app.broker.deliveries() == []


# -- PostgreSQL only ---------------------------------------------------------------------------
@pytest.mark.postgres
def test_a_listener_is_woken_when_a_publish_commits_and_not_before(pg_url: str) -> None:
    app = declare(App("notifyapp", database=pg_url))
    listener = open_broker(pg_url, migrate=False)
    try:
        listener.wait_for_work(0.01)  # subscribe to the channel
        with psycopg.connect(pg_url) as conn:
            app.publish("user.joined", {"user": "ada"}, conn=conn)
            assert "user.joined" not in (listener.wait_for_work(0.2) or set())
            conn.commit()
        eventually(lambda: "user.joined" in (listener.wait_for_work(0.2) or set()), 5.0)
    finally:
        listener.close()
        app.close()


# -- bad databases ---------------------------------------------------------------------------
def test_a_file_that_is_not_sqlite_gives_a_database_error_and_is_left_untouched(
        tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    original = b"These are my notes, not a database.\n" * 200 + bytes(range(256))
    path.write_bytes(original)

    with pytest.raises(DatabaseError, match=r"notes\.db"):
        open_broker(f"sqlite:///{path}")
    with pytest.raises(DatabaseError):
        App("x", database=f"sqlite:///{path}").broker  # noqa: B018

    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


def test_opening_a_fresh_sqlite_file_waits_for_another_writer_instead_of_failing(
        tmp_path: Path) -> None:
    """Switching a new file to WAL upgrades a read lock inside one statement, where SQLite
    refuses at once rather than wait; the broker must wait like any other statement."""
    path = tmp_path / "fresh.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    threading.Timer(0.5, writer.commit).start()
    try:
        broker = open_broker(f"sqlite:///{path}")
    finally:
        writer.close()
    try:
        with broker.reading() as cur:
            assert cur.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        broker.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_postgresql_gives_a_database_error_naming_host_and_port_only() -> None:
    port = _free_port()
    url = f"postgresql://pillbox:hunter2-secret@127.0.0.1:{port}/app"

    failures = []
    for attempt in (lambda: open_broker(url),
                    lambda: open_broker(url, migrate=False).stats(T0)):
        with pytest.raises(DatabaseError) as refused:
            attempt()
        failures.append(refused.value)

    for error in failures:
        text = "".join(traceback.format_exception(error))
        assert f"127.0.0.1:{port}" in str(error)
        assert "hunter2-secret" not in text
        assert error.__cause__ is None


# -- migrations --------------------------------------------------------------------------------
MIGRATE = """
import sys
from pillbox.broker import open_broker
print("ready", flush=True)
sys.stdin.readline()
open_broker(sys.argv[1]).close()
print("migrated", flush=True)
"""


def test_migrating_from_several_processes_at_once_applies_each_migration_once(
        db_url: str, open_brokers: Callable[..., SQLBroker]) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", MIGRATE, db_url], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(5)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:  # release them together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outcomes = [(proc.wait(timeout=60), proc.stdout.read(), proc.stderr.read())
                    for proc in procs if proc.stdout and proc.stderr]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert outcomes == [(0, "migrated\n", "")] * 5
    broker = open_brokers(db_url, migrate=False)
    with broker.transaction() as cur:
        cur.execute("SELECT version, count(*) FROM pillbox_migrations GROUP BY version "
                    "ORDER BY version")
        applied = [tuple(row) for row in cur.fetchall()]
    assert applied == [(v, 1) for v, _, _ in queries.migrations(broker.dialect)]
    broker.register(["t"], [Sub("s", "t")], T0)
    publish(broker, "t")
    assert len(broker.pull("s", "w", 10, LEASE_S, T0)) == 1
