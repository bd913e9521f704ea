"""The JSON API and pages answer bad input and a broken database with a 4xx or 503 naming the
problem, never a bare 500: ids no engine can store, numbers JSON cannot carry, ids of the wrong
type, a database that is down."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dash_support import BEARER, TOKEN, make_dead, publish
from starlette.testclient import TestClient

from pillbox.app import App
from pillbox.broker import SQLBroker
from pillbox.dashboard import Dashboard, standalone
from pillbox.protocol import Reporter
from pillbox.web.guard import Guard

TOO_BIG = "99999999999999999999999"  # > 2**63-1: SQLite cannot even bind it
PURGE = "/_pillbox/api/subscriptions/billing/purge"


# -- ids outside the 64-bit range -----------------------------------------------------------------
@pytest.mark.parametrize("id_text", [TOO_BIG, str(2**63), "0"])
def test_ids_no_engine_can_store_are_unknown(client: TestClient, broker: SQLBroker,
                                             id_text: str) -> None:
    dead_id = make_dead(broker, {"n": 1})
    for path in (f"/_pillbox/api/dead/{id_text}", f"/_pillbox/api/crashes/{id_text}"):
        response = client.get(path, headers=BEARER)
        assert response.status_code == 404, path
        assert response.json()["error"].startswith("no "), path
    for verb in ("replay", "drop"):
        response = client.post(f"/_pillbox/api/dead/{id_text}/{verb}", headers=BEARER)
        assert response.status_code == 404, verb
        assert response.json() == {"error": f"no delivery #{int(id_text)}"}
    for page in (f"/_pillbox/crashes/{id_text}", f"/_pillbox/deliveries/{id_text}"):
        response = client.get(page, headers=BEARER)
        assert response.status_code == 404, page
        assert "Not found" in response.text and f"#{int(id_text)}" in response.text
    assert broker.delivery(dead_id).state == "dead"  # nothing else was touched


def test_the_largest_id_an_engine_can_store_is_simply_unknown(client: TestClient) -> None:
    largest = 2**63 - 1
    assert client.get(f"/_pillbox/api/dead/{largest}", headers=BEARER).status_code == 404
    assert client.post(f"/_pillbox/api/dead/{largest}/drop", headers=BEARER).status_code == 404


# -- purge parameters -----------------------------------------------------------------------------
@pytest.mark.parametrize("body", [
    b'{"before": 1e400, "dry_run": true}',
    b'{"before": -1e400, "dry_run": true}',
    b'{"before": NaN, "dry_run": true}',
    b'{"before": Infinity, "dry_run": true}',
    b'{"before": "inf", "dry_run": true}',
    b'{"before": "nan", "dry_run": true}',
    b'{"before": 1' + b"0" * 400 + b', "dry_run": true}',
])
def test_purge_refuses_a_before_that_is_not_a_finite_number(client: TestClient,
                                                            broker: SQLBroker,
                                                            body: bytes) -> None:
    publish(broker, "orders", {"n": 1})
    response = client.post(PURGE, content=body, headers={
        **BEARER, "content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "before must be a finite number" in response.json()["error"]
    assert broker.stats(0)[0].backlog == 1


def test_purge_refuses_a_before_of_the_wrong_type(client: TestClient) -> None:
    for before in (True, [1], {"a": 1}):
        response = client.post(PURGE, headers=BEARER, json={"before": before, "dry_run": True})
        assert response.status_code == 400, before
        assert response.json()["error"].startswith("before must be"), before


@pytest.mark.parametrize("ids", [
    [7, {"a": 1}], [{"a": 1}], [True], [1.5], [None], [""], [["x"]], [2**63], [0], {"a": 1},
    7,
])
def test_purge_refuses_ids_that_are_neither_message_nor_delivery_ids(client: TestClient,
                                                                     broker: SQLBroker,
                                                                     ids: object) -> None:
    publish(broker, "orders", {"n": 1})
    response = client.post(PURGE, headers=BEARER, json={"ids": ids, "dry_run": False})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("ids must"), response.text
    assert broker.stats(0)[0].backlog == 1


def test_purge_takes_message_ids_and_integer_delivery_ids(client: TestClient,
                                                          broker: SQLBroker) -> None:
    by_message = publish(broker, "orders", {"n": 1})
    publish(broker, "orders", {"n": 2})
    (by_delivery,) = [d.id for d in broker.deliveries(subscription="billing")
                      if d.message_id != by_message]
    dry = client.post(PURGE, headers=BEARER, json={"ids": [by_message, by_delivery],
                                                   "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["count"] == 2 and dry.json()["ids"] == [by_message, str(by_delivery)]


def test_query_numbers_must_be_finite_and_plain_digits(client: TestClient) -> None:
    for query in ("since=inf", "since=nan", "until=-inf", "limit=%C2%B2", "limit=%D9%A3"):
        response = client.get(f"/_pillbox/api/crashes?{query}", headers=BEARER)
        assert response.status_code == 400, query
        assert "error" in response.json()


# -- a database that cannot be reached ------------------------------------------------------------
@pytest.fixture(params=["postgres-refused", "sqlite-not-a-database",
                        pytest.param("postgres-no-tables", marks=pytest.mark.postgres)])
def unreachable(request: pytest.FixtureRequest, tmp_path: Path,
                open_brokers: Callable[..., SQLBroker]) -> tuple[SQLBroker, str]:
    """A broker whose database cannot be used, and what the error must name."""
    if request.param == "postgres-refused":  # nothing listens on port 1
        url = "postgresql://postgres:s3cret@127.0.0.1:1/nope"
        return open_brokers(url, migrate=False), "127.0.0.1:1/nope"
    if request.param == "postgres-no-tables":  # e.g. reset under a running dashboard: was a 500
        return open_brokers(request.getfixturevalue("pg_url"), migrate=False), "no pillbox tables"
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a SQLite database\n" * 200)
    return open_brokers(f"sqlite:///{path}", migrate=False), str(path)


def test_a_database_that_is_down_answers_503_naming_it(
        unreachable: tuple[SQLBroker, str]) -> None:
    broker, where = unreachable
    app = standalone(Dashboard(lambda: broker, token=TOKEN))
    with TestClient(app, follow_redirects=False) as c:
        for path in ("/_pillbox/api/overview", "/_pillbox/api/subscriptions",
                     "/_pillbox/api/dead", "/_pillbox/api/dead/1", "/_pillbox/api/crashes/1"):
            response = c.get(path, headers=BEARER)
            assert response.status_code == 503, path
            error = response.json()["error"]
            assert error.startswith("the database is unavailable: ") and where in error, path
            assert "s3cret" not in error
        for path in ("/_pillbox/", "/_pillbox/crashes", "/_pillbox/subscriptions/billing",
                     "/_pillbox/deliveries/1"):
            page = c.get(path, headers={**BEARER, "Accept": "text/html"})
            assert page.status_code == 503, path
            assert page.headers["content-type"].startswith("text/html")
            assert "Database unavailable" in page.text and where in page.text, path
            assert "s3cret" not in page.text
        action = c.post("/_pillbox/api/dead/1/replay", headers=BEARER)
        assert action.status_code == 503 and where in action.json()["error"]
        purge = c.post(PURGE, headers=BEARER, json={"before": 1, "dry_run": True})
        assert purge.status_code == 503 and where in purge.json()["error"]
        metrics = c.get("/_pillbox/metrics", headers=BEARER)
        assert metrics.status_code == 200 and "pillbox_database_up 0.0" in metrics.text


def test_a_web_process_whose_database_is_down_answers_503(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In `pillbox run` the dashboard opens the app's broker on first use: that failing is the
    database's problem too, not a 500."""
    monkeypatch.setenv("PILLBOX_DASHBOARD_TOKEN", TOKEN)
    app = App("down", database="postgresql://postgres:s3cret@127.0.0.1:1/nope")

    async def user_app(scope, receive, send):  # pragma: no cover - never reached
        raise AssertionError("the dashboard's request reached the app")

    c = TestClient(Guard(app, user_app, Reporter(None)), follow_redirects=False)
    try:
        response = c.get("/_pillbox/api/overview", headers=BEARER)
        assert response.status_code == 503
        assert "127.0.0.1:1/nope" in response.json()["error"]
        assert "s3cret" not in response.json()["error"]
    finally:
        app.close()
