"""A fresh database for each drill run, so its numbers are its own."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote


@contextmanager
def fresh(database: str | None, keep: bool) -> Iterator[str]:
    """A new SQLite file (default), or a new schema in the given PostgreSQL database."""
    if database is None or database.startswith("sqlite:"):
        folder = tempfile.mkdtemp(prefix="pillbox-drill-db-")
        yield f"sqlite:///{os.path.join(folder, 'drill.db')}"
        return
    import psycopg
    from psycopg import sql

    schema = f"pillbox_drill_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in database else "?"
    try:
        yield f"{database}{separator}options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        if not keep:
            with psycopg.connect(database, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
