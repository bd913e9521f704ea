"""The JSON API and pages answer bad input and a broken database with a 4xx or 503 naming the
problem, never a bare 500: ids no engine can store, numbers JSON cannot carry, ids of the wrong
type, a database that is down."""

from __future__ import annotations

import pytest
from dash_support import BEARER, make_dead
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
