"""The App: what users declare (topics, subscriptions, crons, web app, database) and publish
through. It delegates storage to the broker and running to `pillbox run`."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pillbox import defaults, payload
from pillbox.broker import SQLBroker, open_broker
from pillbox.cron import CRON_PREFIX, Cron, cron_subscription
from pillbox.errors import ConfigError, UnknownSubscription, UnknownTopic
from pillbox.policy import Handler, Subscription, callable_name, check_name, parse_size

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """One application: its web app, topics, subscriptions and crons.

    `database` defaults to $PILLBOX_DATABASE_URL, then $DATABASE_URL, then a SQLite file
    `pillbox.db` in the working directory.
    """

    def __init__(
        self,
        name: str,
        *,
        database: str | None = None,
        web: Any = None,
        max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES,
    ) -> None:
        check_name("app", name)
        if (not isinstance(max_payload_bytes, int) or isinstance(max_payload_bytes, bool)
                or max_payload_bytes <= 0):
            raise ConfigError(f"max_payload_bytes must be a positive integer, got "
                              f"{max_payload_bytes!r}")
        self.name = name
        self.database = (database or os.environ.get("PILLBOX_DATABASE_URL")
                         or os.environ.get("DATABASE_URL") or defaults.DATABASE_URL)
        self.web = web
        self.max_payload_bytes = max_payload_bytes
        self.subscriptions: dict[str, Subscription] = {}
        self.crons: dict[str, Cron] = {}
        self._topics: set[str] = set()
        self._broker: SQLBroker | None = None
        self._broker_lock = threading.Lock()
        self._pool_size = 4

    # -- declarations --------------------------------------------------------------------
    def topic(self, name: str) -> str:
        """Declare a topic explicitly (one with no subscription yet can be published to)."""
        check_name("topic", name)
        self._topics.add(name)
        return name

    @property
    def topics(self) -> set[str]:
        return self._topics | {sub.topic for sub in self.subscriptions.values()}

    def subscribe(
        self,
        topic: str,
        *,
        name: str | None = None,
        max_attempts: int = defaults.MAX_ATTEMPTS,
        min_backoff: float = defaults.MIN_BACKOFF_S,
        max_backoff: float = defaults.MAX_BACKOFF_S,
        max_crashes: int = defaults.MAX_CRASHES,
        timeout: float = defaults.TIMEOUT_S,
        concurrency: int = defaults.CONCURRENCY,
        memory_limit: int | str | None = None,
    ) -> Callable[[F], F]:
        """Decorator: run the function for every message published to `topic`.

        The subscription is named after the function unless `name` is given. Times are in
        seconds; `memory_limit` is bytes or a size like "512MB".
        """

        if name is not None and not name:
            raise ConfigError("subscription name must not be empty (leave it out to use the "
                              "function's name)")

        def register(handler: F) -> F:
            sub_name = callable_name("subscription", handler, name, f"on {topic!r}")
            if sub_name.startswith(CRON_PREFIX):
                raise ConfigError(f"subscription name {sub_name!r}: names starting with "
                                  f"{CRON_PREFIX!r} are reserved for crons")
            self.add_subscription(Subscription(
                name=sub_name, topic=topic, handler=handler, max_attempts=max_attempts,
                min_backoff_s=min_backoff, max_backoff_s=max_backoff, max_crashes=max_crashes,
                timeout_s=timeout, concurrency=concurrency,
                memory_limit_bytes=parse_size(memory_limit, f"subscription {sub_name!r}"),
            ))
            return handler

        return register

    def add_subscription(self, sub: Subscription) -> None:
        sub.validate()
        if sub.name in self.subscriptions:
            raise ConfigError(f"subscription {sub.name!r} is declared twice")
        self.subscriptions[sub.name] = sub

    def cron(
        self,
        schedule: str,
        *,
        name: str | None = None,
        tz: str = "UTC",
        catch_up: str = "latest",
        overlap: bool = False,
        timeout: float = defaults.TIMEOUT_S,
        max_attempts: int = 1,
        max_crashes: int = defaults.MAX_CRASHES,
        memory_limit: int | str | None = None,
    ) -> Callable[[F], F]:
        """Decorator: run the function on a cron schedule (standard 5-field syntax, or 6 with
        seconds first), once per tick however many processes run."""

        def register(func: F) -> F:
            cron = Cron(name=callable_name("cron", func, name, f"{schedule!r}"),
                        schedule=schedule, tz=tz,
                        catch_up=catch_up, overlap=overlap, func=func)
            cron.validate()
            if cron.name in self.crons:
                raise ConfigError(f"cron {cron.name!r} is declared twice")
            self.crons[cron.name] = cron
            self.add_subscription(cron_subscription(
                cron, timeout_s=timeout, max_attempts=max_attempts, max_crashes=max_crashes,
                memory_limit_bytes=parse_size(memory_limit, f"cron {cron.name!r}")))
            return func

        return register

    def handler(self, subscription: str) -> Handler:
        try:
            return self.subscriptions[subscription].handler
        except KeyError:
            raise UnknownSubscription(subscription, self.subscriptions) from None

    # -- storage -------------------------------------------------------------------------
    @property
    def broker(self) -> SQLBroker:
        """This process's broker, opened (and the schema migrated) on first use."""
        with self._broker_lock:
            if self._broker is None:
                broker = open_broker(self.database, pool_size=self._pool_size)
                broker.register(sorted(self.topics), list(self.subscriptions.values()),
                                time.time())
                self._broker = broker
            return self._broker

    def configure_pool(self, size: int) -> None:
        """Size this process's connection pool (each work type sizes its own)."""
        self._pool_size = max(1, size)

    def close(self) -> None:
        with self._broker_lock:
            if self._broker is not None:
                self._broker.close()
                self._broker = None

    def publish(
        self,
        topic: str,
        data: Any,
        *,
        delay: float | None = None,
        attributes: dict[str, str] | None = None,
        conn: Any = None,
    ) -> str:
        """Store a message durably (before returning) for every subscription of `topic`.

        `conn`: a connection to the same database (psycopg, or sqlite3 for a SQLite file)
        whose open transaction the publish joins: the message then exists if and only if
        that transaction commits.
        Returns the message id.
        """
        if not isinstance(topic, str):
            raise ConfigError(f"topic must be a str, got {topic!r}")
        if topic not in self.topics:
            raise UnknownTopic(topic, self.topics)
        if delay is not None and (not isinstance(delay, int | float) or isinstance(delay, bool)
                                  or not math.isfinite(delay) or delay < 0):
            raise ConfigError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        _check_attributes(attributes)
        text = payload.encode(data, self.max_payload_bytes)
        broker = self.broker
        if conn is not None:
            return broker.publish_in(conn, topic, text, time.time(), attributes=attributes,
                                     delay_s=delay or 0.0)
        return broker.publish(topic, text, time.time(), attributes=attributes,
                              delay_s=delay or 0.0)


def _check_attributes(attributes: dict[str, str] | None) -> None:
    if attributes is None:
        return
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise ConfigError(f"attributes must be a dict of str to str, got {attributes!r}")
