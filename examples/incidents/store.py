"""The example's own data, in the same database as pillbox's (SQLite or PostgreSQL), so a
publish can join the transaction of the write that caused it."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS ex_orgs (
    id {pk}, name TEXT NOT NULL, settings TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ex_incidents (
    id {pk}, org_id INTEGER NOT NULL, title TEXT NOT NULL, status TEXT NOT NULL,
    created_at {real} NOT NULL, updated_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS ex_updates (
    id {pk}, incident_id INTEGER NOT NULL, body TEXT NOT NULL, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS ex_members (
    id {pk}, incident_id INTEGER NOT NULL, username TEXT NOT NULL, joined_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS ex_welcomes (
    message_id TEXT PRIMARY KEY, incident_id INTEGER NOT NULL, username TEXT NOT NULL,
    body TEXT NOT NULL, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS ex_nudges (
    id {pk}, incident_id INTEGER NOT NULL, created_at {real} NOT NULL);
CREATE TABLE IF NOT EXISTS ex_status_page (
    id INTEGER PRIMARY KEY, html TEXT NOT NULL, rendered_at {real} NOT NULL);
"""


class Store:
    """A tiny data layer over sqlite3 or psycopg with `?` placeholders."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = url.startswith(("postgresql:", "postgres:"))
        self._pool: Any = None

    def create_schema(self) -> None:
        ddl = SCHEMA.format(pk="BIGSERIAL PRIMARY KEY" if self.postgres
                            else "INTEGER PRIMARY KEY AUTOINCREMENT",
                            real="DOUBLE PRECISION" if self.postgres else "REAL")
        with self.transaction() as conn:
            if self.postgres:
                conn.execute("SELECT pg_advisory_xact_lock(4242)")
                conn.execute(ddl)
            else:
                for statement in ddl.split(";"):
                    if statement.strip():
                        conn.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A connection inside a transaction, committed on normal exit."""
        if self.postgres:
            with self._postgres_pool().connection() as conn:
                yield conn
            return
        path = self.url[len("sqlite:///"):].split("?", 1)[0]
        conn = sqlite3.connect(path, timeout=30)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def _postgres_pool(self) -> Any:
        if self._pool is None or self._pid != os.getpid():
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(self.url, min_size=1, max_size=8, open=True)
            self._pid = os.getpid()
        return self._pool

    def q(self, conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement; returns its rows (if any)."""
        if self.postgres:
            sql = sql.replace("?", "%s")
        cur = conn.execute(sql, params)
        try:
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()
