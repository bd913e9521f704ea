"""Crash records reach Sentry from the supervisor: checked against a loopback HTTP server
standing in for Sentry's ingest endpoint (sentry-sdk speaks real HTTP to it)."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from helpers import eventually

pytest.importorskip("sentry_sdk")
pytestmark = pytest.mark.crash


class Ingest(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        Ingest.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_crash_records_are_forwarded_to_sentry(fixture_app, run_app, db_url):
    server = HTTPServer(("127.0.0.1", 0), Ingest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Ingest.received = []
    dsn = f"http://publickey@127.0.0.1:{server.server_port}/42"
    fixture_app.publish("jobs", {"mode": "abort"})
    running = run_app(db_url, "--workers", "1", SENTRY_DSN=dsn)
    eventually(lambda: any(b"pillbox crash #" in body for body in Ingest.received),
               timeout_s=60)
    envelope = next(body for body in Ingest.received if b"pillbox crash #" in body)
    assert b"abort" in envelope and b"crashapp.py" in envelope
    assert running.stop() == 0
    server.shutdown()
