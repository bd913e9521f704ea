"""SQLite backend: the embedded default, safe for many processes on one machine.

WAL journal, `BEGIN IMMEDIATE` write transactions, a busy timeout, and one connection per
thread. `synchronous=FULL` by default so a publish survives power loss once it returns
(`?synchronous=normal` in the URL trades that for speed).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pillbox.broker import queries
from pillbox.broker.base import Row, SQLBroker
from pillbox.errors import ConfigError, DatabaseError

BUSY_TIMEOUT_MS = 30_000
WAKE_POLL_S = 0.005
_SYNC_MODES = {"full", "normal", "extra", "off"}


class SQLiteBroker(SQLBroker):
    dialect = "sqlite"

    def __init__(self, url: str, path: str, synchronous: str = "full") -> None:
        if synchronous.lower() not in _SYNC_MODES:
            raise DatabaseError(f"unknown SQLite synchronous mode {synchronous!r} in {url!r}")
        self.url = url
        self.path = path
        self.synchronous = synchronous.upper()
        self.q = queries.load("sqlite")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the opened file
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise DatabaseError(f"SQLite database {path!r}: folder {str(parent)!r} does not exist")
        self._remember_file()

    # -- connections ---------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._remember_file()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def _open(self) -> sqlite3.Connection:
        """Connect and set the pragmas, retrying while another process holds the lock.

        Switching a fresh file to WAL upgrades a read lock to a write lock inside one
        statement; SQLite answers "database is locked" at once there instead of waiting
        (its deadlock rule), so several processes creating the same database together need
        the retry that the busy timeout gives every other statement.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.005
        while True:
            try:
                return self._connect()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise DatabaseError(f"SQLite database {self.path!r}: {exc}") from None
            except sqlite3.DatabaseError as exc:
                raise DatabaseError(
                    f"{self.path!r} cannot be opened as a SQLite database ({exc}); "
                    "the file was left untouched"
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        conn = self._conn()
        cur = conn.cursor()
        try:
            _begin_immediate(cur)
            yield cur
            conn.commit()
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            _rollback(conn)
            if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
                raise
            raise DatabaseError(f"SQLite database {self.path!r}: {exc}") from None
        except BaseException:
            _rollback(conn)
            raise
        finally:
            cur.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Cursor]:
        """A read in autocommit mode: WAL readers never wait for the writer."""
        cur = self._conn().cursor()
        try:
            yield cur
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    def _remember_file(self) -> None:
        """The file's identity the first time it exists, for `file_problem`."""
        if self._identity is None and os.path.exists(self.path):
            found = os.stat(self.path)
            self._identity = (found.st_dev, found.st_ino)

    def file_problem(self) -> str | None:
        if self._identity is None:
            return None
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return (f"SQLite database {self.path!r} was deleted or replaced while in use: the "
                    "running processes keep the old, unlinked file, and a publisher would "
                    "create a new one nobody reads; restore it or restart `pillbox run`")
        except OSError as exc:
            return f"SQLite database {self.path!r} cannot be checked: {exc}"
        if (found.st_dev, found.st_ino) != self._identity:
            return (f"SQLite database {self.path!r} was deleted or replaced while in use: the "
                    "running processes keep the old file, and new connections open another; "
                    "restore it or restart `pillbox run`")
        return None

    def check_connection(self, conn: Any) -> None:
        if not isinstance(conn, sqlite3.Connection):
            raise ConfigError(f"conn= must be a sqlite3 connection to this app's database "
                              f"{self.path!r}, got {type(conn).__name__}")
        try:
            rows = conn.execute("PRAGMA database_list").fetchall()
        except sqlite3.Error as exc:
            raise ConfigError(f"conn= cannot be used: {exc}") from None
        main = next((str(row[2]) for row in rows if row[1] == "main"), "")
        if not (main and os.path.exists(main) and os.path.samefile(main, self.path)):
            raise ConfigError(
                f"conn= is a connection to {main or 'an in-memory database'!r}, not to this "
                f"app's database {self.path!r}: a message stored there would never be seen")

    # -- dialect hooks -------------------------------------------------------------------
    def _lease_rows(self, cur: Any, query: str, params: dict[str, Any]) -> list[Row]:
        cur.execute(query, params)
        ids = [row[0] for row in cur.fetchall()]
        if not ids:
            return []
        cur.execute(self.q["leased_messages"], {"ids": json.dumps(ids)})
        return list(cur.fetchall())

    def _list(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values))

    @staticmethod
    def _bool(value: bool) -> Any:
        return int(value)

    def wait_for_work(self, timeout_s: float) -> set[str] | None:
        """Poll `PRAGMA data_version` (cheap: it reads shared memory) until another connection
        commits; returns None then (what changed is unknown), an empty set on timeout."""
        conn = self._conn()
        start = conn.execute("PRAGMA data_version").fetchone()[0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(WAKE_POLL_S)
            if conn.execute("PRAGMA data_version").fetchone()[0] != start:
                return None
        return set()

    def migrate(self) -> None:
        conn = self._conn()
        try:
            _begin_immediate(conn.cursor())
            conn.execute(self.q["create_migrations_table"])
            done = {row[0] for row in conn.execute(self.q["applied_migrations"])}
            for version, name, sql in queries.migrations("sqlite"):
                if version in done:
                    continue
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(self.q["record_migration"],
                             {"version": version, "name": name, "now": time.time()})
            conn.commit()
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.rollback()
            raise DatabaseError(f"SQLite database {self.path!r}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.rollback()
            raise DatabaseError(
                f"{self.path!r} is not a usable SQLite database ({exc}); the file was left "
                "untouched"
            ) from None


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.rollback()


def _begin_immediate(cur: sqlite3.Cursor) -> None:
    """Take the write lock up front so two writers never deadlock on lock upgrade."""
    cur.execute("BEGIN IMMEDIATE")


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into complete statements."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statement = pending.strip()
            pending = ""
            if statement and not all(
                part.strip().startswith("--") or not part.strip()
                for part in statement.splitlines()
            ):
                yield statement
