"""The JSON API and pages answer bad input and a broken database with a 4xx or 503 naming the
problem, never a bare 500: ids no engine can store, numbers JSON cannot carry, ids of the wrong
type, a database that is down."""

from __future__ import annotations

import pytest
from dash_support import BEARER, make_dead, publish
from starlette.testclient import TestClient

from pillbox.broker import SQLBroker

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
