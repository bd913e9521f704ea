"""Fixtures of the dashboard tests: a broker on each real engine with two subscriptions, and a
client of the dashboard served as `pillbox dashboard` serves it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from dash_support import TOKEN
from starlette.testclient import TestClient

from helpers import Sub
from pillbox.broker import SQLBroker
from pillbox.dashboard import Dashboard, standalone


@pytest.fixture
def broker(db_url: str, open_brokers: Callable[..., SQLBroker]) -> SQLBroker:
    """`orders` -> billing; `mail` -> mailer."""
    b = open_brokers(db_url)
    b.register(["orders", "mail"], [Sub("billing", "orders", max_attempts=2),
                                    Sub("mailer", "mail", max_attempts=1, max_crashes=1)],
               time.time())
    return b


@pytest.fixture
def client(broker: SQLBroker) -> Iterator[TestClient]:
    app = standalone(Dashboard(lambda: broker, token=TOKEN))
    with TestClient(app, base_url="http://testserver", follow_redirects=False) as c:
        yield c
