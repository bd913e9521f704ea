"""The broker against an in-memory model of its semantics, driven by hypothesis.

Each example opens a fresh database, declares topic `t` fanned out to subscriptions `a` and
`b` (max_crashes=2), and runs random publishes, pulls, acks, nacks, extends, releases,
rescues, crashes, pauses, replays, drops and purges with a fake clock. After every step the
stored deliveries (state, attempt, crashes, suspect, errors, lease columns) and the stats must
equal the model's. Stale leases stay in play, so every "only the current holder" rule is
exercised from both sides.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from helpers import Sub, crash_record
from pillbox.broker import SQLBroker, open_broker
from pillbox.messages import Lease

T0 = 1_000_000_000.0
SUBS = ("a", "b")
MAX_ATTEMPTS = 3
MAX_CRASHES = 2
ROLES = ("culprit", "prime", "suspect", "released")
OLD_HOLDER_ACTIONS = ("ack", "nack", "dead", "extend", "release", "crash")

SETTINGS = settings(
    max_examples=int(os.environ.get("BROKER_SM_EXAMPLES", "30")),  # more for a soak
    stateful_step_count=30,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree; failures print their steps
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Model:
    """What the broker should hold for one delivery."""

    sub: str
    published_at: float
    available_at: float
    state: str = "available"
    attempt: int = 0
    crashes: int = 0
    suspect: bool = False
    owner: str | None = None
    token: str | None = None
    deadline: float | None = None
    last_error: str | None = None
    dead_reason: str | None = None

    def lease(self, owner: str, token: str, deadline: float) -> None:
        self.state, self.owner, self.token, self.deadline = "leased", owner, token, deadline
        self.attempt += 1

    def unlease(self, state: str, available_at: float | None = None) -> None:
        self.state, self.owner, self.token, self.deadline = state, None, None, None
        if available_at is not None:
            self.available_at = available_at


class BrokerMachine(RuleBasedStateMachine):
    """Subclassed per test with `new_url` / `drop_url` bound to the test's engine."""

    new_url: Callable[[], str]
    drop_url: Callable[[str], None]

    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.url = type(self).new_url()
        self.broker: SQLBroker = open_broker(self.url, pool_size=1)
        self.broker.register(["t"], [Sub(s, "t", MAX_ATTEMPTS, MAX_CRASHES) for s in SUBS], T0)
        self.now = T0
        self.model: dict[int, Model] = {}
        self.paused: set[str] = set()
        self.pulls = 0
        self.issued: list[Lease] = []

    def teardown(self) -> None:
        self.broker.close()
        type(self).drop_url(self.url)

    # -- model helpers -------------------------------------------------------------------
    def holds(self, lease: Lease) -> bool:
        m = self.model.get(lease.delivery_id)
        return m is not None and m.state == "leased" and m.token == lease.token

    def ready(self, subs: tuple[str, ...], suspect: bool) -> list[int]:
        # suspects: those with the fewest crashes first (innocents before repeat offenders)
        found = [(m.crashes if suspect else 0, m.available_at, did)
                 for did, m in self.model.items()
                 if m.sub in subs and m.sub not in self.paused and m.state == "available"
                 and m.suspect == suspect and m.available_at <= self.now]
        return [did for _, _, did in sorted(found)]

    def pick(self, index: int, states: tuple[str, ...] | None = None) -> int | None:
        ids = sorted(did for did, m in self.model.items() if states is None or m.state in states)
        return ids[index % len(ids)] if ids else None

    def take(self, leases: list[Lease], expected: list[int], lease_s: float) -> Any:
        assert sorted(lease.delivery_id for lease in leases) == sorted(expected)
        for lease in leases:
            m = self.model[lease.delivery_id]
            assert lease.message.attempt == m.attempt + 1
            assert lease.message.subscription == m.sub
            assert lease.deadline == self.now + lease_s
            m.lease(lease.owner, lease.token, lease.deadline)
            self.issued.append(lease)
        return multiple(*leases)

    # -- rules ---------------------------------------------------------------------------
    @initialize(count=st.integers(1, 4))
    def some_messages_to_start_with(self, count: int) -> None:
        for _ in range(count):
            self.publish(0.0)

    @rule(delay=st.sampled_from([0.0, 0.0, 3.0]))
    def publish(self, delay: float) -> None:
        message_id = self.broker.publish("t", json.dumps({"at": self.now}), self.now,
                                         delay_s=delay)
        deliveries = self.broker.deliveries(message_id=message_id)
        assert sorted(d.subscription for d in deliveries) == list(SUBS)
        for d in deliveries:
            assert d.id not in self.model
            self.model[d.id] = Model(sub=d.subscription, published_at=self.now,
                                     available_at=self.now + delay)

    @rule(dt=st.sampled_from([0.5, 2.0, 7.0, 31.0]))
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule(target=leases, sub=st.sampled_from(SUBS), limit=st.integers(1, 3),
          lease_s=st.sampled_from([5.0, 30.0]))
    def pull(self, sub: str, limit: int, lease_s: float) -> Any:
        self.pulls += 1
        expected = self.ready((sub,), suspect=False)[:limit]
        leases = self.broker.pull(sub, f"w{self.pulls}", limit, lease_s, self.now)
        return self.take(leases, expected, lease_s)

    @rule(target=leases, sub=st.sampled_from(SUBS), limit=st.integers(1, 3),
          acks=st.lists(leases, max_size=3, unique_by=lambda lease: (lease.delivery_id,
                                                                    lease.token)))
    def pull_acking(self, sub: str, limit: int, acks: list[Lease]) -> Any:
        """A worker's pull that acks what it finished in the same transaction."""
        self.pulls += 1
        for lease in acks:
            if self.holds(lease):
                self.model[lease.delivery_id].unlease("acked")
        expected = self.ready((sub,), suspect=False)[:limit]
        leases = self.broker.pull(sub, f"w{self.pulls}", limit, 30.0, self.now, acks=acks)
        return self.take(leases, expected, 30.0)

    @rule(acks=st.lists(leases, min_size=1, max_size=4,
                        unique_by=lambda lease: (lease.delivery_id, lease.token)))
    def ack_many(self, acks: list[Lease]) -> None:
        expected = []
        for lease in acks:
            expected.append(self.holds(lease))
            if expected[-1]:
                self.model[lease.delivery_id].unlease("acked")
        assert self.broker.ack_many(acks, self.now) == expected

    @rule(target=leases)
    def pull_suspect(self) -> Any:
        self.pulls += 1
        expected = self.ready(SUBS, suspect=True)[:1]
        leases = self.broker.pull_suspect(list(SUBS), f"lane{self.pulls}", 10.0, self.now)
        return self.take(leases, expected, 10.0)

    @rule(lease=leases)
    def ack(self, lease: Lease) -> None:
        expected = self.holds(lease)
        assert self.broker.ack(lease, self.now) is expected
        if expected:
            self.model[lease.delivery_id].unlease("acked")

    @rule(lease=leases, retry_in=st.sampled_from([0.0, 4.0]))
    def nack(self, lease: Lease, retry_in: float) -> None:
        expected = self.holds(lease)
        give_up = lease.message.attempt >= MAX_ATTEMPTS
        retry_at = None if give_up else self.now + retry_in
        error = f"error at {self.now}"
        assert self.broker.nack(lease, error, retry_at, self.now) is expected
        if expected:
            m = self.model[lease.delivery_id]
            m.last_error = error
            if retry_at is None:
                m.unlease("dead")
                m.dead_reason = "max attempts"
            else:
                m.unlease("available", retry_at)

    @rule(lease=leases, extra=st.sampled_from([5.0, 60.0]))
    def extend(self, lease: Lease, extra: float) -> None:
        expected = self.holds(lease)
        held = self.broker.extend([(lease.delivery_id, lease.token)], self.now + extra)
        assert held == int(expected)
        if expected:
            self.model[lease.delivery_id].deadline = self.now + extra

    @rule(lease=leases)
    def release(self, lease: Lease) -> None:
        expected = self.holds(lease)
        assert self.broker.release([(lease.delivery_id, lease.token)], self.now) == int(expected)
        if expected:
            m = self.model[lease.delivery_id]
            m.unlease("available", self.now)
            m.attempt -= 1

    @rule(target=leases, lease=leases,
          how=st.sampled_from(["release", "nack", "expire", "suspect"]),
          old_action=st.sampled_from(OLD_HOLDER_ACTIONS))
    def redeliver(self, lease: Lease, how: str, old_action: str) -> Any:
        """Give a lease up one of the ways a delivery goes back, pull again at once, and have
        the old holder act on its lease, which must count for nothing."""
        if how == "release":
            self.release(lease)
        elif how == "nack":
            self.nack(lease, 0.0)
        elif how == "expire":
            self.now = max(self.now, lease.deadline + 0.5)
            self.rescue_expired()
        else:
            self.crash([(lease, "suspect")])
        m = self.model.get(lease.delivery_id)
        if m is not None and m.suspect:
            pulled = self.pull_suspect()
        else:
            pulled = self.pull(lease.message.subscription, 1, 30.0)
        if lease in self.taken_over():
            self.act_as_old_holder(lease, old_action)
        return pulled

    @precondition(lambda self: self.taken_over())
    @rule(index=st.integers(0, 1000), action=st.sampled_from(OLD_HOLDER_ACTIONS))
    def old_holder_acts_after_takeover(self, index: int, action: str) -> None:
        stale = self.taken_over()
        self.act_as_old_holder(stale[index % len(stale)], action)

    def act_as_old_holder(self, lease: Lease, action: str) -> None:
        """Nothing the holder of a lease taken over by another owner does counts (the
        invariants then check that nothing changed)."""
        did, token = lease.delivery_id, lease.token
        if action == "ack":
            assert self.broker.ack(lease, self.now) is False
        elif action in ("nack", "dead"):
            retry_at = self.now if action == "nack" else None
            assert self.broker.nack(lease, "late", retry_at, self.now) is False
        elif action == "extend":
            assert self.broker.extend([(did, token)], self.now + 1000) == 0
        elif action == "release":
            assert self.broker.release([(did, token)], self.now) == 0
        else:
            crash_id = self.broker.record_crash(crash_record(self.now), [(did, token, "culprit")])
            assert self._crash_links(crash_id) == []

    def taken_over(self) -> list[Lease]:
        return [lease for lease in self.issued
                if (m := self.model.get(lease.delivery_id)) is not None
                and m.state == "leased" and m.token != lease.token]

    @rule()
    def rescue_expired(self) -> None:
        expired = [m for m in self.model.values()
                   if m.state == "leased" and m.deadline is not None and m.deadline < self.now]
        assert self.broker.rescue_expired(self.now) == len(expired)
        for m in expired:
            m.unlease("available", self.now)

    @rule(victims=st.lists(st.tuples(leases, st.sampled_from(ROLES)), min_size=1, max_size=3,
                           unique_by=lambda victim: victim[0].delivery_id))
    def crash(self, victims: list[tuple[Lease, str]]) -> None:
        held = [(lease, role) for lease, role in victims if self.holds(lease)]
        crash_id = self.broker.record_crash(
            crash_record(self.now, "died"),
            [(lease.delivery_id, lease.token, role) for lease, role in victims])
        for lease, role in held:
            m = self.model[lease.delivery_id]
            if role == "culprit":
                m.crashes += 1
                m.suspect = True
                m.last_error = f"crash #{crash_id}: died"
                if m.crashes >= MAX_CRASHES:
                    m.unlease("dead", self.now)
                    m.dead_reason = "poison pill"
                else:
                    m.unlease("available", self.now)
            elif role == "prime":  # a suspect charged a crash, never up to quarantine
                m.crashes += m.crashes + 1 < MAX_CRASHES
                m.suspect = True
                m.attempt -= 1
                m.last_error = f"crash #{crash_id}: died"
                m.unlease("available", self.now)
            else:
                m.suspect = m.suspect or role == "suspect"
                m.attempt -= 1
                m.unlease("available", self.now)
        crashed = {did for did, role in self._crash_links(crash_id)}
        assert crashed == {lease.delivery_id for lease, role in held if role != "released"}

    @rule(sub=st.sampled_from(SUBS), paused=st.booleans())
    def set_paused(self, sub: str, paused: bool) -> None:
        self.broker.set_paused(sub, paused)
        (self.paused.add if paused else self.paused.discard)(sub)
        assert self.broker.paused() == self.paused

    @precondition(lambda self: self.model)
    @rule(index=st.integers(0, 1000), only_dead=st.booleans())
    def replay(self, index: int, only_dead: bool) -> None:
        did = self.pick(index, ("dead",) if only_dead else None)
        if did is None:
            return
        m = self.model[did]
        expected = m.state == "dead"
        assert self.broker.replay(did, self.now) is expected
        if expected:
            m.unlease("available", self.now)
            m.attempt, m.crashes, m.dead_reason = 0, 0, None

    @precondition(lambda self: self.model)
    @rule(index=st.integers(0, 1000), only_dead=st.booleans())
    def drop(self, index: int, only_dead: bool) -> None:
        did = self.pick(index, ("dead",) if only_dead else None)
        if did is None:
            return
        expected = self.model[did].state == "dead"
        assert self.broker.drop(did) is expected
        if expected:
            del self.model[did]

    @rule(sub=st.sampled_from(SUBS), by_time=st.booleans(), dry_run=st.booleans())
    def purge(self, sub: str, by_time: bool, dry_run: bool) -> None:
        before = self.now - 5 if by_time else None
        doomed = [did for did, m in self.model.items()
                  if m.sub == sub and m.state in ("available", "dead")
                  and (before is None or m.published_at < before)]
        count = self.broker.purge(sub, before=before, everything=not by_time, dry_run=dry_run)
        assert count == len(doomed)
        if not dry_run:
            for did in doomed:
                del self.model[did]

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def deliveries_match_the_model(self) -> None:
        stored = {d.id: d for d in self.broker.deliveries(limit=100_000)}
        assert set(stored) == set(self.model)
        for did, d in stored.items():
            m = self.model[did]
            assert (d.subscription, d.state, d.attempt, d.crashes, d.suspect) == (
                m.sub, m.state, m.attempt, m.crashes, m.suspect), did
            assert (d.last_error, d.dead_reason) == (m.last_error, m.dead_reason), did
            assert d.attempt >= 0
            if d.state == "available":
                assert d.available_at == m.available_at, did

    @invariant()
    def only_leased_deliveries_hold_a_lease_and_it_is_the_models(self) -> None:
        with self.broker.transaction() as cur:
            cur.execute("SELECT id, state, lease_owner, lease_token, lease_deadline "
                        "FROM pillbox_deliveries")
            rows = cur.fetchall()
        for did, state, owner, token, deadline in rows:
            m = self.model[did]
            assert (owner, token, deadline) == (m.owner, m.token, m.deadline), did
            assert (state == "leased") == (token is not None and deadline is not None), did
            if state == "leased":
                assert m.attempt >= 1

    @invariant()
    def stats_match_the_model(self) -> None:
        for stats in self.broker.stats(self.now):
            mine = [m for m in self.model.values() if m.sub == stats.name]
            count = {s: sum(1 for m in mine if m.state == s) for s in ("available", "leased",
                                                                       "dead")}
            assert (stats.backlog, stats.in_flight, stats.dead) == (
                count["available"], count["leased"], count["dead"])
            assert stats.paused == (stats.name in self.paused)

    def _crash_links(self, crash_id: int) -> list[tuple[int, str]]:
        with self.broker.transaction() as cur:
            cur.execute("SELECT delivery_id, role FROM pillbox_crash_deliveries WHERE crash_id = "
                        + str(int(crash_id)))
            return [(int(did), role) for did, role in cur.fetchall()]


def test_the_broker_behaves_like_the_model(databases: Any, engine: str) -> None:
    machine = type(f"BrokerMachine_{engine}", (BrokerMachine,),
                   {"new_url": staticmethod(databases.new),
                    "drop_url": staticmethod(databases.drop)})
    run_state_machine_as_test(machine, settings=SETTINGS)


@pytest.mark.parametrize("engine", ["sqlite"])
def test_the_model_catches_a_broker_that_acks_for_anyone(
        databases: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine is not vacuous: an ack that ignores the token is caught."""
    from pillbox.broker import queries

    sloppy = dict(queries.load("sqlite"))
    ack = sloppy["ack"]
    held = ack[ack.index("(id, lease_token) IN"):ack.index("RETURNING")]
    sloppy["ack"] = sloppy["ack"].replace(held, "id IN (SELECT value FROM json_each(:ids))\n")
    assert "json_each(:tokens)" not in sloppy["ack"]
    original = open_broker

    def sloppy_open(url: str, **kwargs: Any) -> SQLBroker:
        broker = original(url, **kwargs)
        broker.q = sloppy
        return broker

    monkeypatch.setattr(sys.modules[__name__], "open_broker", sloppy_open)
    machine = type("SloppyMachine", (BrokerMachine,),
                   {"new_url": staticmethod(databases.new),
                    "drop_url": staticmethod(databases.drop)})
    with pytest.raises(AssertionError):
        run_state_machine_as_test(machine, settings=settings(SETTINGS, max_examples=1000,
                                                             phases=[Phase.generate]))
