"""Bounded, loopback-only traffic: a web prober and a stream of good messages."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class Probe:
    at: float
    ok: bool
    error: str = ""


@dataclass
class Published:
    message_id: str
    subscription: str
    at: float


@dataclass
class Traffic:
    """Runs the prober and the message stream in threads until `stop()` or the deadline."""

    base_url: str
    incident_id: int
    probe_interval_s: float = 0.02
    message_interval_s: float = 0.1
    max_requests: int = 20_000
    probes: list[Probe] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)
    publish_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._probe_loop, daemon=True),
                         threading.Thread(target=self._message_loop, daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _probe_loop(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            for _ in range(self.max_requests):
                if self._stop.is_set():
                    return
                started = time.time()
                try:
                    response = client.get("/status")
                    ok = response.status_code == 200
                    self.probes.append(Probe(started, ok, "" if ok else
                                             f"HTTP {response.status_code}"))
                except httpx.HTTPError as exc:
                    self.probes.append(Probe(started, False, type(exc).__name__))
                self._stop.wait(max(0.0, self.probe_interval_s - (time.time() - started)))

    def _message_loop(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=5.0) as client:
            for n in range(self.max_requests):
                if self._stop.is_set():
                    return
                started = time.time()
                if n % 4 == 3:
                    self._post(client, f"/incidents/{self.incident_id}/updates",
                               {"body": f"update {n}"}, "status-page")
                else:
                    self._post(client, f"/incidents/{self.incident_id}/members",
                               {"username": f"user{n}"}, "welcome-message")
                self._stop.wait(max(0.0, self.message_interval_s - (time.time() - started)))

    def _post(self, client: httpx.Client, path: str, body: dict[str, object],
              subscription: str) -> None:
        try:
            response = client.post(path, json=body)
            response.raise_for_status()
            self.published.append(Published(response.json()["message_id"], subscription,
                                            time.time()))
        except httpx.HTTPError as exc:
            self.publish_errors.append(f"{path}: {exc}")
