"""The looks that run on every wake-up stay index seeks however large the backlog: the
isolation lane's "is there a suspect?" once scanned every available delivery, which kept an
idle lane on a whole core while a worker drained 200,000 messages."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg
import pytest

from pillbox.broker import SQLBroker

PARAMS = {"now": 1e12, "subscription": "audit-log"}


def plan(broker: SQLBroker, db_url: str, query: str) -> str:
    sql = broker.q[query]
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url[len("sqlite:///"):].partition("?")[0]) as conn:
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql, PARAMS).fetchall()
        return "\n".join(str(row[-1]) for row in rows)
    with psycopg.connect(db_url) as conn:
        conn.execute("SET enable_seqscan = off")  # tiny tables: ask which index it can use
        rows = conn.execute("EXPLAIN " + sql, PARAMS).fetchall()
    return "\n".join(str(row[0]) for row in rows)


@pytest.mark.parametrize(("query", "index"), [
    ("has_suspect", "pillbox_deliveries_suspects"),  # the isolation lane's look
    ("has_ready", "pillbox_deliveries_ready"),       # a worker's look, by subscription
])
def test_the_looks_on_every_wake_up_seek_an_index(
    db_url: str, open_brokers: Callable[..., SQLBroker], query: str, index: str
) -> None:
    broker = open_brokers(db_url)
    text = plan(broker, db_url, query)
    assert index in text, text
    assert "SCAN pillbox_deliveries" not in text, text
