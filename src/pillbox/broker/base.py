"""The broker's semantics, shared by both SQL backends.

Responsibilities, in order of the message's life:
1. publish: store the message and fan it out to one delivery per subscription of its topic;
2. pull: lease available deliveries to one owner with a fresh token;
3. ack / nack / extend / release: honoured only from the current lease holder;
4. record_crash: store a crash record and charge, suspect or release what was in flight;
5. operator actions and reads: pause, purge, replay, drop, stats, crashes.

Backends (`sqlite.py`, `postgres.py`) provide connections and the dialect's queries; this class
never builds SQL.
"""

from __future__ import annotations

import json
import secrets
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from pillbox.errors import UnknownSubscription
from pillbox.messages import CrashRecord, Delivery, Lease, Message, SubscriptionStats

Row = Sequence[Any]

#: What a crash does to each delivery that was in flight (or held: FINISHED is a delivery
#: whose handler had succeeded and whose ack was still pending; it is acked).
CULPRIT, SUSPECT, RELEASED, FINISHED = "culprit", "suspect", "released", "finished"
#: The suspect whose own thread crashed the process: charged a crash, never made dead by it.
PRIME = "prime"


class SQLBroker(ABC):
    """Durable pub/sub over one SQL database. Thread-safe; one per process."""

    dialect: str
    q: dict[str, str]
    url: str

    # -- backend hooks -------------------------------------------------------------------
    @abstractmethod
    def transaction(self) -> AbstractContextManager[Any]:
        """A cursor inside a write transaction, committed on normal exit."""

    def reading(self) -> AbstractContextManager[Any]:
        """A cursor for a read-only look (no write lock); by default a transaction."""
        return self.transaction()

    def single_statement(self) -> AbstractContextManager[Any]:
        """A cursor for work the dialect does in one statement (publish, ack and lease,
        extend, release). A dialect whose round trips are costly runs it in autocommit, with
        no BEGIN/COMMIT of its own; by default a transaction."""
        return self.transaction()

    @abstractmethod
    def _lease_rows(self, cur: Any, query: str, params: dict[str, Any]) -> list[Row]:
        """Run a lease query and return (id, message_id, subscription, attempt, topic,
        payload, attributes, published_at) rows."""

    @abstractmethod
    def _list(self, values: Sequence[Any]) -> Any:
        """A list parameter in the dialect's form."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def migrate(self) -> None:  # noqa: B027 - optional hook
        """Create or upgrade the schema; safe to run from many processes at once."""

    def has_schema(self) -> bool:
        """Whether pillbox's tables exist in this database (without creating them)."""
        with self.transaction() as cur:
            cur.execute(self.q["has_schema"])
            return bool(cur.fetchone()[0])

    def notify(self, cur: Any, topic: str) -> None:  # noqa: B027 - optional hook
        """Wake consumers of `topic` once the transaction commits (no-op where polling)."""

    def wait_for_work(self, timeout_s: float) -> set[str] | None:
        """Block up to timeout_s for a publish notification; returns topics, None if unknown."""
        return None

    # -- declarations ----------------------------------------------------------------------
    def register(self, topics: Sequence[str], subscriptions: Sequence[Any], now: float) -> None:
        """Declare topics and subscriptions (objects with name, topic, max_attempts,
        max_crashes) so publishes fan out to them."""
        with self.transaction() as cur:
            for topic in topics:
                cur.execute(self.q["upsert_topic"], {"name": topic})
            for sub in subscriptions:
                cur.execute(
                    self.q["upsert_subscription"],
                    {"name": sub.name, "topic": sub.topic, "max_attempts": sub.max_attempts,
                     "max_crashes": sub.max_crashes, "now": now},
                )

    def subscriptions(self) -> dict[str, str]:
        """Every stored subscription name with its topic."""
        with self.transaction() as cur:
            cur.execute(self.q["subscription_names"])
            return {name: topic for name, topic in cur.fetchall()}

    def check_subscription(self, name: str) -> None:
        known = self.subscriptions()
        if name not in known:
            raise UnknownSubscription(name, known)

    # -- publish -------------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload_json: str,
        now: float,
        *,
        attributes: dict[str, str] | None = None,
        delay_s: float = 0.0,
        cursor: Any = None,
    ) -> str:
        """Store one message (already encoded) and its deliveries; returns its id.

        With `cursor`, runs inside the caller's transaction and does not commit.
        """
        message_id = uuid.uuid4().hex
        params = {"id": message_id, "topic": topic, "payload": payload_json,
                  "attributes": json.dumps(attributes or {}), "now": now,
                  "available_at": now + delay_s}
        if cursor is not None:
            self._publish_with(cursor, params)
        else:
            with self.single_statement() as cur:
                self._publish_with(cur, params)
        return message_id

    def publish_in(self, conn: Any, topic: str, payload_json: str, now: float, *,
                   attributes: dict[str, str] | None = None, delay_s: float = 0.0) -> str:
        """Publish inside the caller's open transaction on `conn` (a psycopg or sqlite3
        connection to this database): the message exists if and only if it commits."""
        self.check_connection(conn)
        cur = conn.cursor()
        try:
            return self.publish(topic, payload_json, now, attributes=attributes,
                                delay_s=delay_s, cursor=cur)
        finally:
            cur.close()

    def file_problem(self) -> str | None:
        """For an embedded database: what happened to its file if it is no longer the one
        opened (deleted, replaced); None when all is well or for a server."""
        return None

    def check_connection(self, conn: Any) -> None:
        """ConfigError unless `conn` is a connection of this engine to this very database
        (a message written anywhere else would never be seen)."""
        raise NotImplementedError

    def publish_batch(self, topic: str, payloads_json: Sequence[str], now: float) -> list[str]:
        """Store many messages in one transaction (used by benchmarks and bulk loads)."""
        rows: list[dict[str, Any]] = [{"id": uuid.uuid4().hex, "topic": topic, "payload": payload,
                                       "attributes": "{}", "now": now, "available_at": now}
                                      for payload in payloads_json]
        with self.transaction() as cur:
            self._publish_many(cur, rows)
            self.notify(cur, topic)
        return [row["id"] for row in rows]

    def _publish_many(self, cur: Any, rows: Sequence[dict[str, Any]]) -> None:
        for params in rows:
            self._publish_with(cur, params, notify=False)

    def _publish_with(self, cur: Any, params: dict[str, Any], notify: bool = True) -> None:
        """Store and fan out one message (a dialect may do it in one statement)."""
        cur.execute(self.q["insert_message"], params)
        cur.execute(self.q["fan_out"], params)
        if notify:
            self.notify(cur, params["topic"])

    # -- consume -------------------------------------------------------------------------
    def pull(self, subscription: str, owner: str, limit: int, lease_s: float,
             now: float, acks: Sequence[Lease] = ()) -> list[Lease]:
        """Lease up to `limit` available deliveries of a subscription.

        `acks`: finished leases to ack in the same transaction (one commit for both); those
        whose lease was lost are logged by the caller through `ack_many`'s contract: they
        will simply be redelivered.
        """
        token = secrets.token_hex(8)
        params = {"subscription": subscription, "owner": owner, "token": token,
                  "deadline": now + lease_s, "now": now, "limit": limit}
        if not acks and not self._has_ready(subscription, now):
            return []
        with self.single_statement() as cur:
            rows = self._ack_and_lease(cur, acks, params)
        return [self._lease(row, token, owner, now + lease_s) for row in rows]

    def _ack_and_lease(self, cur: Any, acks: Sequence[Lease], params: dict[str, Any]
                       ) -> list[Row]:
        """Ack `acks` and run the lease query (a dialect may do both in one statement)."""
        self._ack_with(cur, acks, params["now"])
        return self._lease_rows(cur, self.q["lease"], params)

    def _has_ready(self, subscription: str, now: float) -> bool:
        """A read-only look before taking a write lock for a pull that may find nothing."""
        return self._exists("has_ready", {"subscription": subscription, "now": now})

    def _has_suspect(self, now: float) -> bool:
        return self._exists("has_suspect", {"now": now})

    def _exists(self, query: str, params: dict[str, Any]) -> bool:
        with self.reading() as cur:
            cur.execute(self.q[query], params)
            return cur.fetchone() is not None

    def ack_many(self, leases: Sequence[Lease], now: float) -> list[bool]:
        """Ack several leases in one statement; True for each lease that was still held."""
        if not leases:
            return []
        with self.single_statement() as cur:
            return self._ack_with(cur, leases, now)

    def _ack_with(self, cur: Any, leases: Sequence[Lease], now: float) -> list[bool]:
        """One statement per round of distinct deliveries: a stale and a current lease of
        the same delivery in one call must not both count as held (a workers' batch never
        has two, so that is one round)."""
        held = [False] * len(leases)
        pending = list(enumerate(leases))
        while pending:
            batch: dict[int, tuple[int, Lease]] = {}
            later = []
            for index, lease in pending:
                if lease.delivery_id in batch:
                    later.append((index, lease))
                else:
                    batch[lease.delivery_id] = (index, lease)
            cur.execute(self.q["ack"], {**self._held([(d, x.token) for d, (_, x) in batch.items()]),
                                        "now": now})
            for row in cur.fetchall():
                held[batch[int(row[0])][0]] = True
            pending = later
        return held

    def _held(self, leases: Sequence[tuple[int, str]]) -> dict[str, Any]:
        """The ids/tokens parameters that name leases in the batch queries."""
        return {"ids": self._list([int(d) for d, _ in leases]),
                "tokens": self._list([t for _, t in leases])}

    def pull_suspect(self, subscriptions: Sequence[str], owner: str, lease_s: float,
                     now: float) -> list[Lease]:
        """Lease one suspect delivery (for the isolation lane)."""
        if not self._has_suspect(now):
            return []
        token = secrets.token_hex(8)
        params = {"subscriptions": self._list(subscriptions), "owner": owner, "token": token,
                  "deadline": now + lease_s, "now": now}
        with self.transaction() as cur:
            rows = self._lease_rows(cur, self.q["lease_suspect"], params)
        return [self._lease(row, token, owner, now + lease_s) for row in rows]

    @staticmethod
    def _lease(row: Row, token: str, owner: str, deadline: float) -> Lease:
        delivery_id, message_id, subscription, attempt, topic, payload, attrs, published = row
        message = Message(id=message_id, topic=topic, subscription=subscription,
                          payload=json.loads(payload), attributes=json.loads(attrs),
                          published_at=published, attempt=attempt, delivery_id=delivery_id)
        return Lease(message=message, token=token, owner=owner, deadline=deadline)

    def ack(self, lease: Lease, now: float) -> bool:
        """Mark done; False when the lease was lost (expired and taken over)."""
        return self.ack_many([lease], now)[0]

    def nack(self, lease: Lease, error: str, retry_at: float | None, now: float) -> bool:
        """Handler failed: redeliver at retry_at, or dead when retry_at is None."""
        params = {"id": lease.delivery_id, "token": lease.token, "error": error, "now": now,
                  "retry_at": retry_at, "reason": "max attempts"}
        query = "nack_retry" if retry_at is not None else "nack_dead"
        with self.transaction() as cur:
            cur.execute(self.q[query], params)
            held = bool(cur.rowcount == 1)
            if held:
                message = lease.message
                self._event(cur, "failed", message.subscription, message.delivery_id,
                            message.id, error, now)
                if retry_at is None:
                    self._event(cur, "dead", message.subscription, message.delivery_id,
                                message.id, "max attempts", now)
        return held

    def extend(self, leases: Sequence[tuple[int, str]], deadline: float) -> int:
        """Push the deadline of leases still held; returns how many were."""
        if not leases:
            return 0
        with self.single_statement() as cur:
            cur.execute(self.q["extend"], {**self._held(leases), "deadline": deadline})
            return int(cur.rowcount)

    def release(self, leases: Sequence[tuple[int, str]], now: float) -> int:
        """Give leases back without charging the attempt."""
        if not leases:
            return 0
        with self.single_statement() as cur:
            cur.execute(self.q["release"], {**self._held(leases), "now": now})
            return int(cur.rowcount)

    def leases_of(self, owner: str) -> list[tuple[int, str]]:
        """(delivery_id, token) of every lease `owner` still holds."""
        with self.transaction() as cur:
            cur.execute(self.q["leases_of_owner"], {"owner": owner})
            return [(int(row[0]), row[1]) for row in cur.fetchall()]

    def rescue_expired(self, now: float) -> int:
        """Make deliveries whose lease expired available again."""
        with self.transaction() as cur:
            cur.execute(self.q["rescue_expired"], {"now": now})
            return int(cur.rowcount)

    # -- crashes and events --------------------------------------------------------------
    def record_crash(self, record: CrashRecord, roles: Sequence[tuple[int, str, str]]) -> int:
        """Store a crash record and apply it to in-flight deliveries.

        `roles` holds (delivery_id, lease_token, role) with role culprit, prime, suspect,
        released or finished (its handler had succeeded: acked).
        A culprit's crash count goes up (dead as a poison pill at max_crashes); a suspect is
        retried alone without losing an attempt; a prime suspect too, with a crash counted
        (short of max_crashes); a released delivery simply goes back.
        """
        with self.transaction() as cur:
            cur.execute(self.q["insert_crash"], _crash_params(record))
            crash_id = int(cur.fetchone()[0])
            for delivery_id, token, role in roles:
                self._apply_role(cur, crash_id, delivery_id, token, role, record)
        return crash_id

    def _apply_role(self, cur: Any, crash_id: int, delivery_id: int, token: str, role: str,
                    record: CrashRecord) -> None:
        params = {"id": delivery_id, "token": token, "now": record.at, "crash_id": crash_id,
                  "role": role, "error": f"crash #{crash_id}: {record.summary}"}
        if role in (RELEASED, FINISHED):
            self._settle_one(cur, delivery_id, token, role, record.at)
            return
        if role == SUSPECT:
            cur.execute(self.q["mark_suspect"], params)
            if cur.rowcount:
                cur.execute(self.q["link_crash"], params)
            return
        cur.execute(self.q["charge_prime_suspect" if role == PRIME else "charge_crash"], params)
        row = cur.fetchone()
        if row is None:
            return
        state, subscription, message_id = row
        cur.execute(self.q["link_crash"], params)
        self._event(cur, "crashed", subscription, delivery_id, message_id, record.cause,
                    record.at)
        if state == "dead":
            self._event(cur, "dead", subscription, delivery_id, message_id, "poison pill",
                        record.at)

    def settle(self, roles: Sequence[tuple[int, str, str]], now: float) -> None:
        """What a process that stopped (not crashed) still held: ack the finished
        deliveries, release the rest without an attempt penalty."""
        with self.transaction() as cur:
            for delivery_id, token, role in roles:
                self._settle_one(cur, delivery_id, token, role, now)

    def _settle_one(self, cur: Any, delivery_id: int, token: str, role: str,
                    now: float) -> None:
        query = "ack" if role == FINISHED else "release"
        cur.execute(self.q[query], {**self._held([(delivery_id, token)]), "now": now})
        if cur.description is not None:  # ack RETURNING: read it, or SQLite cannot commit
            cur.fetchall()

    def record_event(self, kind: str, detail: str, now: float, *, subscription: str | None = None,
                     delivery_id: int | None = None, message_id: str | None = None) -> None:
        """Store an error seen outside the ack path (thread errors, web 500s)."""
        with self.transaction() as cur:
            self._event(cur, kind, subscription, delivery_id, message_id, detail, now)

    def _event(self, cur: Any, kind: str, subscription: str | None, delivery_id: int | None,
               message_id: str | None, detail: str, now: float) -> None:
        cur.execute(self.q["insert_event"], {"now": now, "kind": kind, "subscription": subscription,
                                             "delivery_id": delivery_id, "message_id": message_id,
                                             "detail": detail})

    # -- operator actions ----------------------------------------------------------------
    def set_paused(self, subscription: str, paused: bool) -> None:
        self.check_subscription(subscription)
        self._one("set_paused", {"name": subscription, "paused": self._bool(paused)})

    def paused(self) -> set[str]:
        with self.transaction() as cur:
            cur.execute(self.q["paused_names"])
            return {row[0] for row in cur.fetchall()}

    def purge(self, subscription: str, *, before: float | None = None,
              ids: Sequence[str] | None = None, dry_run: bool = False,
              everything: bool = False) -> int:
        """Delete available and dead deliveries of one subscription that match.

        With neither `before` nor `ids`, `everything=True` is required: a purge is never
        accidentally total. Deliveries in flight are never purged.
        """
        self.check_subscription(subscription)
        if before is None and ids is None and not everything:
            raise ValueError("purge needs before=, ids= or everything=True")
        params = {"subscription": subscription, "before": before,
                  "ids": None if ids is None else self._list(list(ids))}
        with self.transaction() as cur:
            cur.execute(self.q["purge_count"], params)
            count = int(cur.fetchone()[0])
            if not dry_run:
                cur.execute(self.q["purge"], params)
        return count

    def replay(self, delivery_id: int, now: float) -> bool:
        """Give a dead delivery a fresh start; False when it is not dead."""
        return self._one("replay", {"id": delivery_id, "now": now})

    def drop(self, delivery_id: int) -> bool:
        """Delete one dead delivery; False when it is not dead."""
        return self._one("drop", {"id": delivery_id})

    def _one(self, query: str, params: dict[str, Any]) -> bool:
        with self.transaction() as cur:
            cur.execute(self.q[query], params)
            return bool(cur.rowcount == 1)

    @staticmethod
    def _bool(value: bool) -> Any:
        return value

    # -- reads ---------------------------------------------------------------------------
    def delivery(self, delivery_id: int) -> Delivery | None:
        with self.transaction() as cur:
            cur.execute(self.q["get_delivery"], {"id": delivery_id})
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(self.q["crash_ids_of"], {"id": delivery_id})
            crash_ids = [int(r[0]) for r in cur.fetchall()]
        return _delivery(row, crash_ids)

    def dead(self, subscription: str | None = None, limit: int = 100) -> list[Delivery]:
        if subscription is not None:
            self.check_subscription(subscription)
        with self.transaction() as cur:
            cur.execute(self.q["list_dead"], {"subscription": subscription, "limit": limit})
            return [_delivery(row, []) for row in cur.fetchall()]

    def deliveries(self, *, message_id: str | None = None, subscription: str | None = None,
                   state: str | None = None, limit: int = 1000) -> list[Delivery]:
        with self.transaction() as cur:
            cur.execute(self.q["list_deliveries"], {"message_id": message_id,
                                                    "subscription": subscription,
                                                    "state": state, "limit": limit})
            return [_delivery(row, []) for row in cur.fetchall()]

    def stats(self, now: float) -> list[SubscriptionStats]:
        with self.transaction() as cur:
            cur.execute(self.q["stats"], {"since_5m": now - 300, "since_1h": now - 3600})
            rows = cur.fetchall()
        return [_stats(row, now) for row in rows]

    def crashes(self, since: float = 0.0, limit: int = 100) -> list[CrashRecord]:
        with self.transaction() as cur:
            cur.execute(self.q["list_crashes"], {"since": since, "limit": limit})
            return [_crash(row) for row in cur.fetchall()]

    def crash(self, crash_id: int) -> CrashRecord | None:
        with self.transaction() as cur:
            cur.execute(self.q["get_crash"], {"id": crash_id})
            row = cur.fetchone()
        return None if row is None else _crash(row)

    def events(self, kind: str | None = None, since: float = 0.0,
               limit: int = 100) -> list[dict[str, Any]]:
        with self.transaction() as cur:
            cur.execute(self.q["list_events"], {"kind": kind, "since": since, "limit": limit})
            names = ("id", "at", "kind", "subscription", "delivery_id", "message_id", "detail")
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def subscription_events(self, subscription: str, kind: str, since: float = 0.0,
                            limit: int = 100) -> list[dict[str, Any]]:
        """Recent events of one kind for one subscription, newest first."""
        with self.transaction() as cur:
            cur.execute(self.q["list_subscription_events"], {
                "subscription": subscription, "kind": kind, "since": since, "limit": limit})
            names = ("id", "at", "kind", "subscription", "delivery_id", "message_id", "detail")
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def crash_summaries(self, since: float, limit: int = 20_000) -> list[dict[str, Any]]:
        """id, at, work_type, cause and summary of crash records since a time, newest first:
        the light read behind the dashboard's timeline (no tracebacks, no log tails)."""
        with self.transaction() as cur:
            cur.execute(self.q["crash_summaries"], {"since": since, "limit": limit})
            names = ("id", "at", "work_type", "cause", "summary")
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def event_count(self, kind: str, since: float) -> int:
        with self.transaction() as cur:
            cur.execute(self.q["event_count"], {"kind": kind, "since": since})
            return int(cur.fetchone()[0])

    def totals(self) -> Totals:
        """All-time counts, read at scrape time by the Prometheus collector."""
        with self.transaction() as cur:
            cur.execute(self.q["totals_published"])
            published = {topic: int(n) for topic, n in cur.fetchall()}
            cur.execute(self.q["totals_acked"])
            acked = {sub: int(n) for sub, n in cur.fetchall()}
            cur.execute(self.q["totals_events"])
            events = {(kind, sub): int(n) for kind, sub, n in cur.fetchall()}
            cur.execute(self.q["totals_crashes"])
            crashes = {(work_type, cause): int(n) for work_type, cause, n in cur.fetchall()}
            cur.execute(self.q["totals_durations"])
            durations: dict[str, dict[str, tuple[int, float]]] = {}
            for sub, le, n, seconds in cur.fetchall():
                durations.setdefault(sub, {})[le] = (int(n), float(seconds))
        return Totals(published=published, acked=acked, events=events, crashes=crashes,
                      durations=durations)

    def add_durations(self, buckets: Sequence[tuple[str, str, int, float]]) -> None:
        """Add observed handler durations: (subscription, le, observations, seconds) per
        bucket, counts not cumulative."""
        if not buckets:
            return
        with self.transaction() as cur:
            cur.executemany(self.q["add_durations"], [
                {"subscription": sub, "le": le, "observations": n, "seconds": seconds}
                for sub, le, n, seconds in buckets])

    # -- cron ticks ----------------------------------------------------------------------
    def claim_tick(self, cron: str, tick_at: float, topic: str, payload_json: str,
                   now: float, publish: bool = True) -> str | None:
        """Claim a cron tick and (unless `publish` is False: a skipped tick) publish its
        message in the same transaction; None if another process claimed it first."""
        message_id = uuid.uuid4().hex
        with self.transaction() as cur:
            cur.execute(self.q["insert_tick"], {"cron": cron, "tick_at": tick_at,
                                                "message_id": message_id if publish else ""})
            if cur.fetchone() is None:
                return None
            if publish:
                self._publish_with(cur, {"id": message_id, "topic": topic,
                                         "payload": payload_json, "attributes": "{}",
                                         "now": now, "available_at": now})
        return message_id

    def last_tick(self, cron: str) -> float | None:
        with self.transaction() as cur:
            cur.execute(self.q["last_tick"], {"cron": cron})
            row = cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def unfinished(self, subscription: str) -> int:
        with self.transaction() as cur:
            cur.execute(self.q["unfinished_count"], {"subscription": subscription})
            return int(cur.fetchone()[0])


@dataclass(frozen=True)
class Totals:
    """All-time counts: messages per topic, acked deliveries per subscription, events per
    (kind, subscription or None), crash records per (work type, cause), and handler
    durations per subscription and bucket bound: (observations, seconds), not cumulative."""

    published: dict[str, int]
    acked: dict[str, int]
    events: dict[tuple[str, str | None], int]
    crashes: dict[tuple[str, str], int]
    durations: dict[str, dict[str, tuple[int, float]]]


def _crash_params(record: CrashRecord) -> dict[str, Any]:
    return {"at": record.at, "work_type": record.work_type, "pid": record.pid,
            "exit_code": record.exit_code, "signal": record.signal, "cause": record.cause,
            "in_flight": json.dumps(record.in_flight), "traceback": record.traceback,
            "peak_rss_bytes": record.peak_rss_bytes, "log_tail": record.log_tail,
            "summary": record.summary}


def _crash(row: Row) -> CrashRecord:
    (crash_id, at, work_type, pid, exit_code, sig, cause, in_flight, tb, rss, log_tail,
     summary) = row
    return CrashRecord(id=int(crash_id), at=at, work_type=work_type, pid=pid,
                       exit_code=exit_code, signal=sig, cause=cause,
                       in_flight=json.loads(in_flight), traceback=tb,
                       peak_rss_bytes=int(rss), log_tail=log_tail, summary=summary)


def _delivery(row: Row, crash_ids: list[int]) -> Delivery:
    (delivery_id, message_id, topic, subscription, state, attempt, crashes, suspect, payload,
     attrs, published_at, available_at, last_error, dead_reason, finished_at) = row
    return Delivery(id=int(delivery_id), message_id=message_id, topic=topic,
                    subscription=subscription, state=state, attempt=attempt, crashes=crashes,
                    suspect=bool(suspect), payload=json.loads(payload),
                    attributes=json.loads(attrs), published_at=published_at,
                    available_at=available_at, last_error=last_error,
                    dead_reason=dead_reason, finished_at=finished_at, crash_ids=crash_ids)


def _stats(row: Row, now: float) -> SubscriptionStats:
    (name, topic, paused, backlog, in_flight, oldest, dead, acked_5m, failed_5m, crashed_5m,
     acked_1h, failed_1h, crashed_1h, dead_1h) = row
    return SubscriptionStats(
        name=name, topic=topic, paused=bool(paused), backlog=backlog, in_flight=in_flight,
        oldest_unacked_age_s=None if oldest is None else max(0.0, now - oldest), dead=dead,
        acked_5m=acked_5m, failed_5m=failed_5m, crashed_5m=crashed_5m, acked_1h=acked_1h,
        failed_1h=failed_1h, crashed_1h=crashed_1h, dead_1h=dead_1h)
