"""Fixtures every suite shares: a clean environment and a fresh database per test.

`db_url` runs a test once per engine:
- sqlite: a new file under the test's tmp_path;
- postgres: the real server at $PILLBOX_TEST_POSTGRES_URL (default
  postgresql://postgres@127.0.0.1:5432/test), in a schema of its own that is dropped
  afterwards. The broker's SQL names tables without a schema, so `search_path` in the URL's
  `options` isolates each test; LISTEN/NOTIFY work as usual (the channel is database-wide).

When PostgreSQL is unreachable the postgres tests are skipped locally and FAIL when CI=true.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import psycopg
import pytest
from psycopg import sql

from pillbox.app import App
from pillbox.broker import SQLBroker, open_broker

POSTGRES_URL = os.environ.get(
    "PILLBOX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SCHEMA_PREFIX = "pbtest_"
_schema_numbers = itertools.count()
_server: dict[str, str | None] = {}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's database settings."""
    for name in list(os.environ):
        if name.startswith("PILLBOX_") and name != "PILLBOX_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)
    monkeypatch.delenv("DATABASE_URL", raising=False)


# -- PostgreSQL ---------------------------------------------------------------------------
def _probe_postgres() -> str | None:
    """None when the server answers (creating the test database if missing), else why not."""
    info = psycopg.conninfo.conninfo_to_dict(POSTGRES_URL)
    where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
        return None
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            return f"PostgreSQL unreachable at {where}: {str(exc).strip().splitlines()[0]}"
    try:
        admin = psycopg.conninfo.make_conninfo(POSTGRES_URL, dbname="postgres")
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(info["dbname"])))
        return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {where} has no test database: {str(exc).strip().splitlines()[0]}"


def require_postgres() -> None:
    """Skip (locally) or fail (CI=true) the calling test when PostgreSQL is unreachable."""
    if "problem" not in _server:
        _server["problem"] = _probe_postgres()
        if _server["problem"] is None:
            _drop_orphan_schemas()
    problem = _server["problem"]
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem} (CI=true: the postgres tests must run)", pytrace=False)
    pytest.skip(problem)


def _drop_orphan_schemas() -> None:
    """Drop test schemas left behind by test runs that were killed (their pid is gone)."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (SCHEMA_PREFIX + "%",)
        ).fetchall()
        for (name,) in rows:
            pid = name[len(SCHEMA_PREFIX):].split("_", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(name)))


class PostgresSchemas:
    """Creates isolated schemas on the real server and drops them all at the end."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def new(self) -> str:
        """A fresh empty schema; returns a URL whose connections use only that schema."""
        name = f"{SCHEMA_PREFIX}{os.getpid()}_{next(_schema_numbers)}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        self.created.append(name)
        separator = "&" if "?" in POSTGRES_URL else "?"
        options = quote(f"-csearch_path={name}", safe="")
        return f"{POSTGRES_URL}{separator}options={options}&application_name={name}"

    def drop(self, url: str) -> None:
        """Drop the schema behind a URL `new` returned, ending connections left open."""
        schema = parse_qs(urlsplit(url).query)["application_name"][0]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = %s AND pid <> pg_backend_pid()", (schema,))
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))
        self.created.remove(schema)

    def drop_all(self) -> None:
        for schema in list(self.created):
            self.drop(f"?application_name={schema}")


class SQLiteFiles:
    """Fresh SQLite database files in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.numbers = itertools.count()

    def new(self) -> str:
        return f"sqlite:///{self.folder / f'pillbox-{next(self.numbers)}.db'}"

    def drop(self, url: str) -> None:
        path = url[len("sqlite:///"):]
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)

    def drop_all(self) -> None:
        """Files go with tmp_path."""


@pytest.fixture
def pg_schemas() -> Iterator[PostgresSchemas]:
    """Fresh PostgreSQL schemas on demand."""
    require_postgres()
    schemas = PostgresSchemas()
    yield schemas
    schemas.drop_all()


@pytest.fixture
def postgres_server_url() -> str:
    """The PostgreSQL server's own URL (for tools that make their own schema, like the
    drill); skipped locally, failed under CI=true, when the server is unreachable."""
    require_postgres()
    return POSTGRES_URL


@pytest.fixture
def pg_url(pg_schemas: PostgresSchemas) -> str:
    """A PostgreSQL URL isolated to a fresh schema (for PostgreSQL-only tests)."""
    return pg_schemas.new()


# -- both engines -------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def databases(engine: str, tmp_path: Path,
              request: pytest.FixtureRequest) -> SQLiteFiles | PostgresSchemas:
    """Fresh, empty databases of the test's engine: `.new()` -> URL, `.drop(url)`."""
    if engine == "sqlite":
        return SQLiteFiles(tmp_path)
    schemas: PostgresSchemas = request.getfixturevalue("pg_schemas")
    return schemas


@pytest.fixture
def db_url(databases: SQLiteFiles | PostgresSchemas) -> str:
    """A fresh, empty database URL, once per engine (sqlite, postgres)."""
    return databases.new()


@pytest.fixture
def open_brokers() -> Iterator[Callable[..., SQLBroker]]:
    """`open_broker` whose brokers are closed when the test ends."""
    opened: list[SQLBroker] = []

    def _open(url: str, **kwargs: Any) -> SQLBroker:
        broker = open_broker(url, **kwargs)
        opened.append(broker)
        return broker

    yield _open
    for broker in opened:
        broker.close()


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., App]]:
    """`App(name, database=db_url)` whose broker is closed when the test ends."""
    apps: list[App] = []

    def _make(name: str = "testapp", **kwargs: Any) -> App:
        kwargs.setdefault("database", db_url)
        app = App(name, **kwargs)
        apps.append(app)
        return app

    yield _make
    for app in apps:
        app.close()
