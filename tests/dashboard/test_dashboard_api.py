"""The dashboard's JSON API, pages, authentication, CSRF and escaping, on every engine."""

from __future__ import annotations

import time

import pytest
from dash_support import (
    BEARER,
    TOKEN,
    ack_one,
    crash_one,
    fail_one,
    make_dead,
    publish,
    session,
)
from starlette.testclient import TestClient

from pillbox.app import App
from pillbox.broker import SQLBroker
from pillbox.dashboard import Dashboard, standalone
from pillbox.protocol import Reporter
from pillbox.web.guard import Guard

XSS = "<script>window.__pwned = 1</script><img src=x onerror=alert(1)>"

READS = ["/_pillbox/", "/_pillbox/crashes", "/_pillbox/subscriptions/billing",
         "/_pillbox/metrics", "/_pillbox/api/overview", "/_pillbox/api/subscriptions",
         "/_pillbox/api/subscriptions/billing", "/_pillbox/api/crashes", "/_pillbox/api/dead",
         "/_pillbox/api/session"]
ACTIONS = ["/_pillbox/api/subscriptions/billing/pause",
           "/_pillbox/api/subscriptions/billing/resume",
           "/_pillbox/api/subscriptions/billing/purge", "/_pillbox/api/dead/1/replay",
           "/_pillbox/api/dead/1/drop", "/_pillbox/logout"]


# -- authentication -------------------------------------------------------------------------------
def test_every_page_api_call_and_action_needs_the_token(client: TestClient,
                                                        broker: SQLBroker) -> None:
    dead_id = make_dead(broker, {"n": 1})
    for path in READS:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            response = client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert client.get(path, headers=BEARER).status_code == 200, path
    for path in ACTIONS:
        response = client.post(path.replace("/1/", f"/{dead_id}/"), json={"dry_run": True})
        assert response.status_code == 401, path
    assert broker.paused() == set()
    assert broker.delivery(dead_id).state == "dead"


def test_a_page_without_the_token_offers_the_login_form(client: TestClient) -> None:
    response = client.get("/_pillbox/subscriptions/billing", headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert 'name="token"' in response.text
    assert 'value="/_pillbox/subscriptions/billing"' in response.text


def test_static_files_are_public_and_hold_no_data(client: TestClient) -> None:
    assert client.get("/_pillbox/static/dashboard.js").status_code == 200
    assert client.get("/_pillbox/static/dashboard.css").status_code == 200
    outside = client.get("/_pillbox/static/%2e%2e/app.py")
    assert outside.status_code in (401, 404) and "import" not in outside.text
    assert client.get("/_pillbox/static/missing.js").status_code == 404


def test_without_a_configured_token_the_dashboard_is_disabled(broker: SQLBroker) -> None:
    with TestClient(standalone(Dashboard(lambda: broker, token=None))) as c:
        response = c.get("/_pillbox/api/subscriptions", headers={"Authorization": "Bearer "})
        assert response.status_code == 401
        assert "PILLBOX_DASHBOARD_TOKEN" in response.json()["error"]
        assert c.post("/_pillbox/login", data={"token": ""}).status_code == 401


def test_login_sets_an_httponly_cookie_and_never_redirects_off_site(client: TestClient) -> None:
    wrong = client.post("/_pillbox/login", data={"token": "nope"})
    assert wrong.status_code == 401 and "wrong token" in wrong.text
    for target in ("https://evil.example/", "//evil.example/x", "/elsewhere", "/_pillbox\\x"):
        response = client.post("/_pillbox/login", data={"token": TOKEN, "next": target})
        assert response.status_code == 303
        assert response.headers["location"] == "/_pillbox/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/_pillbox" in cookie
    assert TOKEN not in cookie
    assert client.get("/_pillbox/api/subscriptions").status_code == 200
    ok = client.post("/_pillbox/login", data={"token": TOKEN,
                                              "next": "/_pillbox/crashes?since=5"})
    assert ok.headers["location"] == "/_pillbox/crashes?since=5"


def test_a_session_signed_with_another_token_or_tampered_is_refused(broker: SQLBroker,
                                                                   client: TestClient) -> None:
    session(client)
    cookie = client.cookies.get("pillbox_session")
    assert cookie
    other = standalone(Dashboard(lambda: broker, token=TOKEN + "-rotated"))
    with TestClient(other) as c:
        c.cookies.set("pillbox_session", cookie, path="/_pillbox")
        assert c.get("/_pillbox/api/subscriptions").status_code == 401
    issued, nonce, signature = cookie.split(".")
    client.cookies.clear()
    client.cookies.set("pillbox_session", f"{int(issued) + 9999}.{nonce}.{signature}",
                       path="/_pillbox")
    assert client.get("/_pillbox/api/subscriptions").status_code == 401


def test_logout_ends_the_session(client: TestClient) -> None:
    csrf = session(client)
    response = client.post("/_pillbox/logout", data={"_csrf": csrf})
    assert response.status_code == 303
    assert "Max-Age=0" in response.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/_pillbox/api/subscriptions").status_code == 401


# -- CSRF -----------------------------------------------------------------------------------------
def test_cookie_sessions_need_the_csrf_token_on_every_post(client: TestClient,
                                                           broker: SQLBroker) -> None:
    csrf = session(client)
    dead_id = make_dead(broker, {"n": 1})
    for path in ACTIONS:
        path = path.replace("/1/", f"/{dead_id}/")
        assert client.post(path, data={"dry_run": "1", "before": "1"}).status_code == 403, path
        assert client.post(path, data={"_csrf": "0" * 40, "before": "1"}).status_code == 403
        assert client.post(path, json={"before": 1},
                           headers={"X-CSRF-Token": csrf[:-1] + "x"}).status_code == 403
    assert broker.paused() == set()
    assert broker.delivery(dead_id).state == "dead"
    assert client.get("/_pillbox/api/subscriptions").status_code == 200  # still logged in

    form = client.post("/_pillbox/api/subscriptions/billing/pause",
                       data={"_csrf": csrf, "_next": "/_pillbox/subscriptions/billing"})
    assert form.status_code == 303
    assert form.headers["location"] == ("/_pillbox/subscriptions/billing?done=paused&"
                                        "name=billing")
    assert broker.paused() == {"billing"}
    api = client.post("/_pillbox/api/subscriptions/billing/resume",
                      headers={"X-CSRF-Token": csrf})
    assert api.status_code == 200 and api.json() == {"subscription": "billing", "paused": False}
    assert broker.paused() == set()


def test_the_csrf_token_belongs_to_its_session(client: TestClient, broker: SQLBroker) -> None:
    first = session(client)
    client.cookies.clear()
    second = session(client)
    assert first != second
    response = client.post("/_pillbox/api/subscriptions/billing/pause",
                           headers={"X-CSRF-Token": first})
    assert response.status_code == 403
    assert broker.paused() == set()


def test_bearer_callers_need_no_csrf_token(client: TestClient, broker: SQLBroker) -> None:
    response = client.post("/_pillbox/api/subscriptions/billing/pause", headers=BEARER)
    assert response.status_code == 200
    assert broker.paused() == {"billing"}


# -- reads ----------------------------------------------------------------------------------------
def test_subscriptions_report_backlog_in_flight_rates_and_dead(client: TestClient,
                                                               broker: SQLBroker) -> None:
    for n in range(5):
        publish(broker, "orders", {"n": n})
    ack_one(broker, "billing")
    ack_one(broker, "billing")
    fail_one(broker, "billing", "ValueError: boom", dead=False)
    broker.pull("billing", "test", 1, 30, time.time())
    make_dead(broker, {"n": 9})
    body = client.get("/_pillbox/api/subscriptions", headers=BEARER).json()
    assert isinstance(body["now"], float)
    subs = {s["name"]: s for s in body["subscriptions"]}
    assert set(subs) == {"billing", "mailer"}
    billing = subs["billing"]
    assert billing == billing | {
        "topic": "orders", "paused": False, "backlog": 2, "in_flight": 1, "dead": 0,
        "acked_5m": 2, "acked_1h": 2, "failed_5m": 1, "failed_1h": 1, "crashed_5m": 0,
        "acked_per_min_5m": 0.4, "failed_per_min_5m": 0.2}
    assert 0 <= billing["oldest_unacked_age_s"] < 60
    assert subs["mailer"]["dead"] == 1 and subs["mailer"]["oldest_unacked_age_s"] is None


def test_one_subscription_has_failures_and_dead_deliveries(client: TestClient,
                                                           broker: SQLBroker) -> None:
    publish(broker, "orders", {"n": 1})
    fail_one(broker, "billing", "Traceback...\nKeyError: 'sku'", dead=False)
    dead_id = make_dead(broker, {"to": "a@example.com"})
    billing = client.get("/_pillbox/api/subscriptions/billing", headers=BEARER).json()
    assert billing["subscription"]["name"] == "billing"
    assert [f["detail"] for f in billing["failures"]] == ["Traceback...\nKeyError: 'sku'"]
    assert billing["dead"] == []
    mailer = client.get("/_pillbox/api/subscriptions/mailer", headers=BEARER).json()
    assert [d["id"] for d in mailer["dead"]] == [dead_id]
    assert mailer["dead"][0]["payload"] == {"to": "a@example.com"}
    assert mailer["dead"][0]["dead_reason"] == "max attempts"
    missing = client.get("/_pillbox/api/subscriptions/nope", headers=BEARER)
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_dead_list_and_one_delivery(client: TestClient, broker: SQLBroker) -> None:
    first = make_dead(broker, {"n": 1})
    second = make_dead(broker, {"n": 2})
    dead = client.get("/_pillbox/api/dead", headers=BEARER).json()["dead"]
    assert {d["id"] for d in dead} == {first, second}
    assert client.get("/_pillbox/api/dead?subscription=billing",
                      headers=BEARER).json() == {"dead": []}
    assert len(client.get("/_pillbox/api/dead?limit=1", headers=BEARER).json()["dead"]) == 1
    assert client.get("/_pillbox/api/dead?subscription=nope", headers=BEARER).status_code == 404
    assert client.get("/_pillbox/api/dead?limit=0", headers=BEARER).status_code == 400
    one = client.get(f"/_pillbox/api/dead/{first}", headers=BEARER).json()
    assert one["payload"] == {"n": 1} and one["state"] == "dead"
    assert client.get("/_pillbox/api/dead/999999", headers=BEARER).status_code == 404


def test_crashes_list_and_one_crash_with_its_message_in_flight(client: TestClient,
                                                               broker: SQLBroker) -> None:
    crash_id = crash_one(broker, {"user": "ann"})
    crashes = client.get("/_pillbox/api/crashes", headers=BEARER).json()["crashes"]
    assert [c["id"] for c in crashes] == [crash_id]
    assert crashes[0]["cause"] == "segfault" and crashes[0]["work_type"] == "worker"
    assert client.get(f"/_pillbox/api/crashes?since={time.time() + 60}",
                      headers=BEARER).json() == {"crashes": []}
    one = client.get(f"/_pillbox/api/crashes/{crash_id}", headers=BEARER).json()
    assert one["traceback_crashing"].startswith("Current thread")
    assert "render_welcome" in one["traceback_crashing"]
    assert one["traceback_others"].startswith("Thread 0x2")
    (entry,) = one["in_flight_deliveries"]
    assert entry["delivery"]["payload"] == {"user": "ann"}
    assert entry["delivery"]["state"] == "dead"
    assert entry["delivery"]["crash_ids"] == [crash_id]
    assert client.get("/_pillbox/api/crashes/424242", headers=BEARER).status_code == 404


def test_overview_infers_work_types_and_a_crash_timeline(client: TestClient,
                                                         broker: SQLBroker) -> None:
    crash_one(broker, {"n": 1})
    crash_one(broker, {"n": 2}, work_type="web")
    broker.record_event("web_error", "GET /boom\nZeroDivisionError", time.time())
    view = client.get("/_pillbox/api/overview", headers=BEARER).json()
    assert {w["work_type"]: w["crashes_1h"] for w in view["work_types"]} == {"web": 1,
                                                                            "worker": 1}
    assert view["web_errors_1h"] == 1
    assert view["totals"]["crashes_24h"] == 2 and view["totals"]["dead"] == 2
    timeline = view["timeline"]
    assert len(timeline["buckets"]) == 24
    assert timeline["buckets"][-1]["counts"] == {"segfault": 2}
    assert timeline["peak"] == 2
    page = client.get("/_pillbox/", headers=BEARER)
    assert page.status_code == 200 and "<svg" in page.text and "2 segfault crashes" in page.text


# -- actions --------------------------------------------------------------------------------------
def test_replay_and_drop_dead_deliveries(client: TestClient, broker: SQLBroker) -> None:
    first = make_dead(broker, {"n": 1})
    second = make_dead(broker, {"n": 2})
    replayed = client.post(f"/_pillbox/api/dead/{first}/replay", headers=BEARER)
    assert replayed.status_code == 200 and replayed.json()["replayed"] is True
    assert broker.delivery(first).state == "available"
    again = client.post(f"/_pillbox/api/dead/{first}/replay", headers=BEARER)
    assert again.status_code == 409
    assert client.post(f"/_pillbox/api/dead/{first}/drop", headers=BEARER).status_code == 409
    dropped = client.post(f"/_pillbox/api/dead/{second}/drop", headers=BEARER)
    assert dropped.status_code == 200 and dropped.json()["dropped"] is True
    assert broker.delivery(second) is None
    assert client.post("/_pillbox/api/subscriptions/nope/pause",
                       headers=BEARER).status_code == 404
    assert client.post("/_pillbox/api/dead/99999/replay", headers=BEARER).status_code == 404
    assert client.post(f"/_pillbox/api/dead/{second}/drop", headers=BEARER).status_code == 404


def test_targeted_purge_by_time_and_ids_with_dry_run(client: TestClient,
                                                     broker: SQLBroker) -> None:
    old = [publish(broker, "orders", {"n": n}) for n in range(3)]
    cutoff = time.time()
    new = [publish(broker, "orders", {"n": n}) for n in range(3, 5)]
    url = "/_pillbox/api/subscriptions/billing/purge"
    assert client.post(url, headers=BEARER, json={}).status_code == 400
    assert client.post(url, headers=BEARER, json={"before": "yesterday"}).status_code == 400
    assert client.post(url, headers=BEARER,
                       json={"before": cutoff, "dry_run": "yes"}).status_code == 400
    dry = client.post(url, headers=BEARER, json={"before": cutoff, "dry_run": True}).json()
    assert dry["count"] == 3 and dry["dry_run"] is True
    assert broker.stats(time.time())[0].backlog == 5
    by_ids = client.post(url, headers=BEARER, json={"ids": [new[0], old[0]],
                                                    "before": cutoff}).json()
    assert by_ids == by_ids | {"count": 1, "dry_run": False}
    done = client.post(url, headers=BEARER, json={"before": cutoff}).json()
    assert done["count"] == 2
    remaining = {d.message_id for d in broker.deliveries(subscription="billing")}
    assert remaining == set(new)


def test_purge_from_the_form_defaults_to_a_dry_run(client: TestClient,
                                                   broker: SQLBroker) -> None:
    csrf = session(client)
    ids = [publish(broker, "orders", {"n": n}) for n in range(2)]
    url = "/_pillbox/api/subscriptions/billing/purge"
    next_page = "/_pillbox/subscriptions/billing"
    dry = client.post(url, data={"_csrf": csrf, "_next": next_page, "ids": ids[0],
                                 "dry_run": "1"})
    assert dry.status_code == 303
    assert "done=purge_dry_run" in dry.headers["location"] and "count=1" in dry.headers[
        "location"]
    page = client.get(dry.headers["location"])
    assert "Dry run: a purge would remove 1 deliveries of billing" in page.text
    real = client.post(url, data={"_csrf": csrf, "_next": next_page,
                                  "ids": f"{ids[0]}, {ids[1]}"})
    assert "done=purged" in real.headers["location"] and "count=2" in real.headers["location"]
    assert broker.deliveries(subscription="billing") == []
    unfiltered = client.post(url, data={"_csrf": csrf, "_next": next_page, "dry_run": "1"})
    assert unfiltered.status_code == 400
    assert "a targeted purge needs" in unfiltered.text and f'href="{next_page}"' in unfiltered.text


# -- escaping -------------------------------------------------------------------------------------
def test_payloads_tracebacks_and_names_are_escaped_everywhere(client: TestClient,
                                                              broker: SQLBroker) -> None:
    dead_id = make_dead(broker, {"name": XSS})
    crash_id = crash_one(broker, {"name": XSS}, traceback=f"Current thread:\n  {XSS}")
    publish(broker, "orders", {"n": 1})
    fail_one(broker, "billing", f"ValueError: {XSS}", dead=False)
    pages = ["/_pillbox/subscriptions/mailer", f"/_pillbox/deliveries/{dead_id}",
             f"/_pillbox/crashes/{crash_id}", "/_pillbox/subscriptions/billing",
             "/_pillbox/subscriptions/billing?done=paused&name=" + XSS,
             "/_pillbox/subscriptions/<script>window.__pwned=1"]
    for path in pages:
        body = client.get(path, headers=BEARER).text
        assert "<script>window" not in body and "<img src=x" not in body, path
        assert body.count("<script") == 1, path  # only the dashboard's own script tag
    body = client.get(f"/_pillbox/deliveries/{dead_id}", headers=BEARER).text
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in body
    unknown = client.get("/_pillbox/subscriptions/<script>window.__pwned=1", headers=BEARER)
    assert unknown.status_code == 404 and "&lt;script&gt;window.__pwned=1" in unknown.text
    crash = client.get(f"/_pillbox/crashes/{crash_id}", headers=BEARER).text
    assert "&lt;script&gt;" in crash and "last &lt;b&gt;log&lt;/b&gt; line" in crash
    csp = client.get("/_pillbox/", headers=BEARER).headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_partial_refresh_returns_only_the_region(client: TestClient, broker: SQLBroker) -> None:
    make_dead(broker, {"n": 1})
    full = client.get("/_pillbox/subscriptions/mailer", headers=BEARER).text
    part = client.get("/_pillbox/subscriptions/mailer?partial=body", headers=BEARER).text
    assert "<html" in full and 'data-refresh="body"' in full
    assert "<html" not in part and 'id="dead"' in part


# -- mounted in the web processes -----------------------------------------------------------------
def test_the_guard_mounts_the_dashboard_in_every_web_process(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILLBOX_DASHBOARD_TOKEN", TOKEN)
    app = App("mounted", database=db_url)
    app.topic("things")

    async def user_app(scope, receive, send):  # http only: the client runs no lifespan
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"user app " + scope["path"].encode()})

    c = TestClient(Guard(app, user_app, Reporter(None)), follow_redirects=False)
    try:
        assert c.get("/hello").text == "user app /hello"
        assert c.get("/_pillbox/health").json() == {"status": "ok"}
        assert c.get("/_pillbox/ready").json() == {"status": "ready"}
        assert c.get("/_pillbox").headers["location"] == "/_pillbox/"
        assert c.get("/_pillbox/api/subscriptions").status_code == 401
        subs = c.get("/_pillbox/api/subscriptions", headers=BEARER)
        assert subs.status_code == 200 and subs.json()["subscriptions"] == []
        assert c.get("/_pillbox/nothing-here", headers=BEARER).status_code == 404
        assert "pillbox_database_up 1.0" in c.get("/_pillbox/metrics", headers=BEARER).text
        assert app.broker.events("web_error") == []
    finally:
        app.close()


def test_dev_mode_needs_no_token_but_still_checks_csrf_and_host(broker: SQLBroker) -> None:
    dev = standalone(Dashboard(lambda: broker, token=None, dev=True))
    with TestClient(dev, base_url="http://127.0.0.1:8100", follow_redirects=False) as c:
        page = c.get("/_pillbox/subscriptions/billing")
        assert page.status_code == 200 and "dev mode" in page.text
        assert c.cookies.get("pillbox_session")
        url = "/_pillbox/api/subscriptions/billing/pause"
        assert c.post(url).status_code == 403
        assert c.post(url, headers=BEARER).status_code == 401  # there is no token to accept
        csrf = c.get("/_pillbox/api/session").json()["csrf"]
        assert c.post(url, headers={"X-CSRF-Token": csrf}).status_code == 200
        assert broker.paused() == {"billing"}
        rebinding = c.get("/_pillbox/api/subscriptions", headers={"Host": "evil.example"})
        assert rebinding.status_code == 403
