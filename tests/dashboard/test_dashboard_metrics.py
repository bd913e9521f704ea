"""Prometheus exposition at /_pillbox/metrics: read from the database at scrape time, so every
process answers with the same complete numbers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from dash_support import BEARER, TOKEN, ack_one, crash_one, fail_one, make_dead, publish
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from pillbox.broker import SQLBroker, open_broker
from pillbox.dashboard import Dashboard, standalone
from pillbox.metrics import PillboxCollector


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/_pillbox/metrics", headers=BEARER)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_need_the_token(client: TestClient) -> None:
    assert client.get("/_pillbox/metrics").status_code == 401
    wrong = client.get("/_pillbox/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_counters_move_with_publishes_acks_failures_and_crashes(client: TestClient,
                                                                broker: SQLBroker) -> None:
    before = scrape(client)
    assert value(before, "pillbox_database_up") == 1
    assert ("pillbox_published_total", (("topic", "orders"),)) not in before
    assert value(before, "pillbox_acked_total", subscription="billing", topic="orders") == 0

    for n in range(4):
        publish(broker, "orders", {"n": n})
    ack_one(broker, "billing")
    ack_one(broker, "billing")
    fail_one(broker, "billing", "ValueError", dead=False)
    make_dead(broker, {"n": 1})
    crash_one(broker, {"n": 2})
    broker.record_event("web_error", "GET /boom", time.time())
    broker.record_event("thread_error", "RuntimeError in a library thread", time.time())

    after = scrape(client)
    billing = {"subscription": "billing", "topic": "orders"}
    mailer = {"subscription": "mailer", "topic": "mail"}
    assert value(after, "pillbox_published_total", topic="orders") == 4
    assert value(after, "pillbox_published_total", topic="mail") == 2
    assert value(after, "pillbox_acked_total", **billing) == 2
    assert value(after, "pillbox_failed_total", **billing) == 1
    assert value(after, "pillbox_backlog", **billing) == 2
    assert value(after, "pillbox_in_flight", **billing) == 0
    assert 0 < value(after, "pillbox_oldest_unacked_age_seconds", **billing) < 60
    assert value(after, "pillbox_failed_total", **mailer) == 1
    assert value(after, "pillbox_crashed_total", **mailer) == 1
    assert value(after, "pillbox_dead_total", **mailer) == 2
    assert value(after, "pillbox_dead_messages", **mailer) == 2
    assert value(after, "pillbox_process_crashes_total", work_type="worker",
                 cause="segfault") == 1
    assert value(after, "pillbox_web_errors_total") == 1
    assert value(after, "pillbox_errors_total", kind="thread_error") == 1
    assert value(after, "pillbox_paused", **billing) == 0

    broker.set_paused("billing", True)
    assert value(scrape(client), "pillbox_paused", **billing) == 1


def test_every_process_reports_the_same_totals(db_url: str, broker: SQLBroker) -> None:
    """Work done by another process (here a separate interpreter) shows in this process's
    scrape, and two dashboards (two web processes) agree."""
    script = textwrap.dedent(f"""
        import json, time
        from pillbox.broker import open_broker
        b = open_broker({db_url!r})
        for n in range(3):
            b.publish("orders", json.dumps({{"n": n}}), time.time())
        for lease in b.pull("billing", "other-process", 3, 30, time.time()):
            b.ack(lease, time.time())
        b.close()
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    second = open_broker(db_url)
    try:
        scrapes = []
        for source in (broker, second):
            with TestClient(standalone(Dashboard(lambda s=source: s, token=TOKEN))) as c:
                scrapes.append(scrape(c))
        for samples in scrapes:
            assert value(samples, "pillbox_acked_total", subscription="billing",
                         topic="orders") == 3
            assert value(samples, "pillbox_published_total", topic="orders") == 3
    finally:
        second.close()


def test_an_unreachable_database_reports_down_instead_of_failing() -> None:
    def broken() -> SQLBroker:
        raise RuntimeError("connection refused")

    families = list(PillboxCollector(broken).collect())
    assert [(f.name, f.samples[0].value) for f in families] == [("pillbox_database_up", 0)]


def test_handler_durations_from_several_workers_add_up_in_one_histogram(
        db_url: str, client: TestClient, broker: SQLBroker) -> None:
    other = open_broker(db_url)  # a second worker process's connection
    try:
        broker.add_durations([("billing", "0.005", 3, 0.009), ("billing", "1.0", 1, 0.8)])
        other.add_durations([("billing", "0.005", 2, 0.004), ("mailer", "+Inf", 1, 500.0)])
    finally:
        other.close()
    samples = scrape(client)
    billing = {"subscription": "billing", "topic": "orders"}
    name = "pillbox_handler_duration_seconds"
    assert value(samples, f"{name}_bucket", le="0.005", **billing) == 5
    assert value(samples, f"{name}_bucket", le="0.75", **billing) == 5
    assert value(samples, f"{name}_bucket", le="1.0", **billing) == 6
    assert value(samples, f"{name}_count", **billing) == 6
    assert abs(value(samples, f"{name}_sum", **billing) - 0.813) < 1e-9
    assert value(samples, f"{name}_count", subscription="mailer", topic="mail") == 1
