"""PostgreSQL backend: many machines, `FOR UPDATE SKIP LOCKED` pulls, LISTEN/NOTIFY wake-ups,
and transactional publish inside the caller's own transaction.

Each process opens its own pool, sized by the caller to its own concurrency, so a busy
worker tier cannot starve the web tier of connections.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from pillbox.broker import queries
from pillbox.broker.base import Row, SQLBroker
from pillbox.errors import ConfigError, DatabaseError
from pillbox.messages import Lease

CHANNEL = "pillbox"


class PostgresBroker(SQLBroker):
    dialect = "postgres"

    def __init__(self, url: str, pool_size: int = 4, connect_timeout_s: float = 5.0) -> None:
        self.url = url
        self.where = describe(url)
        self.q = queries.load("postgres")
        self._pool_size = max(1, pool_size)
        self._timeout = connect_timeout_s
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._listener: psycopg.Connection[Any] | None = None
        self._identity: tuple[Any, ...] | None = None
        #: Callers' connections already found to reach this database (publish(conn=)).
        self._checked: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()

    # -- connections ---------------------------------------------------------------------
    def _get_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                self._check_reachable()
                self._pool = ConnectionPool(
                    self.url, min_size=1, max_size=self._pool_size, open=True,
                    timeout=self._timeout, name="pillbox",
                    kwargs={"connect_timeout": int(self._timeout), "autocommit": True},
                )
            return self._pool

    def _check_reachable(self) -> None:
        try:
            psycopg.connect(self.url, connect_timeout=int(self._timeout)).close()
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL at {self.where}: "
                                f"{_first_line(exc)}") from None

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        with (self._database_errors(), self._get_pool().connection() as conn,
              conn.transaction(), conn.cursor() as cur):
            yield cur

    @contextmanager
    def single_statement(self) -> Iterator[psycopg.Cursor[Any]]:
        """Autocommit: the one statement is its own transaction, so the hot paths pay one
        round trip instead of BEGIN, statement, COMMIT."""
        with self._database_errors(), self._get_pool().connection() as conn, \
                conn.cursor() as cur:
            yield cur

    @contextmanager
    def _database_errors(self) -> Iterator[None]:
        """The server down or unreachable, or pillbox's tables gone: a DatabaseError naming
        the database (callers answer 503, retry, or print it), never a raw psycopg error."""
        try:
            yield
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DatabaseError(f"PostgreSQL at {self.where}: {_first_line(exc)}") from None
        except psycopg.errors.UndefinedTable as exc:  # dropped, or never created, under us
            raise DatabaseError(f"PostgreSQL at {self.where} has no pillbox tables "
                                f"({_first_line(exc)}): run `pillbox migrate`") from None

    def check_connection(self, conn: Any) -> None:
        if not isinstance(conn, psycopg.Connection):
            raise ConfigError(f"conn= must be a psycopg connection to this app's database "
                              f"{self.where}, got {type(conn).__name__}")
        if conn in self._checked:
            return
        if self._identity is None:
            with self.reading() as cur:
                cur.execute(self.q["identity"])
                self._identity = tuple(cur.fetchone() or ())
        with conn.cursor() as cur:
            cur.execute(self.q["identity"])
            theirs = tuple(cur.fetchone() or ())
        if theirs != self._identity:
            raise ConfigError(
                f"conn= is connected to database {theirs[0]!r} (port {theirs[1]}), or sees "
                f"other pillbox tables, than this app's database {self.where}: a message "
                "stored there would never be seen")
        self._checked.add(conn)

    def reading(self) -> AbstractContextManager[psycopg.Cursor[Any]]:
        return self.single_statement()

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # -- dialect hooks -------------------------------------------------------------------
    def _lease_rows(self, cur: Any, query: str, params: dict[str, Any]) -> list[Row]:
        cur.execute(query, params)
        rows = list(cur.fetchall())
        rows.sort(key=lambda row: row[0])
        return rows

    def _list(self, values: Sequence[Any]) -> Any:
        return list(values)

    def _publish_with(self, cur: Any, params: dict[str, Any], notify: bool = True) -> None:
        cur.execute(self.q["publish_notify" if notify else "publish"], params)

    def _publish_many(self, cur: Any, rows: Sequence[dict[str, Any]]) -> None:
        cur.executemany(self.q["publish"], rows)  # psycopg pipelines the statements

    def _ack_and_lease(self, cur: Any, acks: Sequence[Lease], params: dict[str, Any]
                       ) -> list[Row]:
        if not acks:
            return self._lease_rows(cur, self.q["lease"], params)
        held = self._held([(lease.delivery_id, lease.token) for lease in acks])
        return self._lease_rows(cur, self.q["ack_and_lease"], {**params, **held})

    def _has_ready(self, subscription: str, now: float) -> bool:
        """No look before the pull: SKIP LOCKED takes no lock on an empty result, and the
        extra round trip cost 18-27% of pull+ack throughput (bench/broker.py)."""
        return True

    def _has_suspect(self, now: float) -> bool:
        return True

    def notify(self, cur: Any, topic: str) -> None:
        cur.execute(self.q["notify"], {"topic": topic})

    def wait_for_work(self, timeout_s: float) -> set[str] | None:
        """Block until a publish is notified (returns its topics) or the timeout passes."""
        if self._listener is None:
            try:
                self._listener = psycopg.connect(self.url, autocommit=True,
                                                 connect_timeout=int(self._timeout))
                self._listener.execute(f"LISTEN {CHANNEL}")
            except psycopg.Error:
                self._listener = None
                time.sleep(timeout_s)
                return None
        topics = set()
        try:
            for note in self._listener.notifies(timeout=timeout_s, stop_after=1):
                topics.add(note.payload)
            # drain anything else already queued without waiting
            for note in self._listener.notifies(timeout=0.0):
                topics.add(note.payload)
        except psycopg.Error:
            self._listener.close()
            self._listener = None
            return None
        return topics

    def migrate(self) -> None:
        try:
            with (psycopg.connect(self.url, connect_timeout=int(self._timeout)) as conn,
                  conn.transaction(), conn.cursor() as cur):
                cur.execute(self.q["migration_lock"])
                cur.execute(self.q["create_migrations_table"])
                cur.execute(self.q["applied_migrations"])
                done = {row[0] for row in cur.fetchall()}
                for version, name, sql in queries.migrations("postgres"):
                    if version not in done:
                        cur.execute(sql.encode())
                        cur.execute(self.q["record_migration"],
                                    {"version": version, "name": name, "now": time.time()})
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL at {self.where}: "
                                f"{_first_line(exc)}") from None


def describe(url: str) -> str:
    """host:port/dbname of a URL, never its password."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable URL>"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    return f"{host}:{port}/{parts.get('dbname', '')}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
