"""Helpers of the dashboard tests: the token, and broker shortcuts that make acked, failed,
dead and crashed deliveries."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.testclient import TestClient

from pillbox.broker import SQLBroker
from pillbox.messages import CrashRecord

TOKEN = "test-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def publish(broker: SQLBroker, topic: str, payload: Any) -> str:
    return broker.publish(topic, json.dumps(payload), time.time())


def ack_one(broker: SQLBroker, subscription: str) -> None:
    (lease,) = broker.pull(subscription, "test", 1, 30, time.time())
    assert broker.ack(lease, time.time())


def fail_one(broker: SQLBroker, subscription: str, error: str, dead: bool) -> int:
    """Nack one delivery (dead when `dead`, else retry later); returns its delivery id."""
    (lease,) = broker.pull(subscription, "test", 1, 30, time.time())
    now = time.time()
    assert broker.nack(lease, error, None if dead else now + 3600, now)
    return lease.delivery_id


def make_dead(broker: SQLBroker, payload: Any, subscription: str = "mailer",
              topic: str = "mail") -> int:
    publish(broker, topic, payload)
    return fail_one(broker, subscription, "Traceback (most recent call last):\n"
                    "  File \"app.py\", line 1, in handler\nValueError: no template", dead=True)


TRACEBACK = ("Current thread 0x1 (most recent call first):\n"
             "  File \"/app/render.py\", line 20 in render_welcome\n\n"
             "Thread 0x2 (most recent call first):\n  File \"x.py\", line 1")


def crash_one(broker: SQLBroker, payload: Any, work_type: str = "worker",
              traceback: str = TRACEBACK) -> int:
    """A worker crash with one `mailer` delivery in flight (quarantined: max_crashes=1)."""
    publish(broker, "mail", payload)
    (lease,) = broker.pull("mailer", "test", 1, 30, time.time())
    record = CrashRecord(at=time.time(), work_type=work_type, pid=4242, exit_code=None,
                         signal=11, cause="segfault",
                         in_flight=[{"delivery_id": lease.delivery_id, "subscription": "mailer",
                                     "message_id": lease.message.id}],
                         traceback=traceback, peak_rss_bytes=50 * 2**20,
                         log_tail="last <b>log</b> line", summary="segfault in worker pid 4242")
    return broker.record_crash(record, [(lease.delivery_id, lease.token, "culprit")])


def session(client: TestClient) -> str:
    """Log in through the form; returns the session's CSRF token."""
    response = client.post("/_pillbox/login", data={"token": TOKEN, "next": "/_pillbox/"})
    assert response.status_code == 303, response.text
    assert "httponly" in response.headers["set-cookie"].lower()
    csrf = client.get("/_pillbox/api/session").json()["csrf"]
    assert csrf
    return str(csrf)
