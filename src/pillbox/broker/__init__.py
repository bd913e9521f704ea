"""Durable pub/sub storage: `open_broker(url)` picks the backend from the URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from pillbox.broker.base import SQLBroker
from pillbox.errors import DatabaseError

__all__ = ["SQLBroker", "describe_url", "open_broker", "sqlite_path"]


def open_broker(url: str, *, pool_size: int = 4, migrate: bool = True) -> SQLBroker:
    """Open (and by default create or upgrade) the broker at `url`.

    `sqlite:///relative.db`, `sqlite:////absolute/path.db`, or `postgresql://...`.
    """
    broker = _backend(url, pool_size)
    if migrate:
        broker.migrate()
    return broker


def sqlite_path(url: str) -> str | None:
    """The file of a sqlite:/// URL (None for other URLs)."""
    if not url.startswith("sqlite:///"):
        return None
    return url[len("sqlite:///"):].split("?", 1)[0] or None


def describe_url(url: str) -> str:
    """Where a URL points, for messages: the SQLite file, or host:port/dbname (never a
    password)."""
    path = sqlite_path(url)
    if path is not None:
        return f"SQLite database {path!r}"
    from pillbox.broker.postgres import describe

    return f"PostgreSQL at {describe(url)}"


def _backend(url: str, pool_size: int) -> SQLBroker:
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from pillbox.broker.sqlite import SQLiteBroker

        parts = urlsplit(url)
        path = sqlite_path(url)
        if not path:
            raise DatabaseError(f"SQLite URL {url!r} names no file; write sqlite:///pillbox.db")
        mode = parse_qs(parts.query).get("synchronous", ["full"])[0]
        return SQLiteBroker(url, path, synchronous=mode)
    if scheme in ("postgresql", "postgres"):
        from pillbox.broker.postgres import PostgresBroker

        return PostgresBroker(url, pool_size=pool_size)
    raise DatabaseError(
        f"unsupported database URL scheme {scheme or url!r}: use sqlite:///path.db or "
        "postgresql://user@host:port/dbname"
    )
