"""Runs one drill: start the app under `pillbox run` (or attach with --url), prepare data,
stream traffic, inject the scenario, stop, and collect what the database recorded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pillbox.broker import SQLBroker, open_broker
from pillbox.drill.scenarios import GOOD_TEMPLATE, Scenario
from pillbox.drill.traffic import Traffic
from pillbox.messages import CrashRecord, Delivery

READY_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 45.0
WELCOME = "welcome-message"


@dataclass
class Outcome:
    """Everything measured in one drill run, before judgement."""

    scenario: Scenario
    database: str
    started_at: float
    injected_at: float
    ended_at: float
    traffic: Traffic
    poison_id: str
    poison: Delivery | None
    crashes: list[CrashRecord]
    good: list[Delivery]
    thread_errors: list[dict[str, Any]]
    log_path: str


class Drill:
    def __init__(self, scenario: Scenario, app_path: str, database: str, duration_s: float,
                 url: str | None = None, workdir: str | None = None) -> None:
        self.scenario = scenario
        self.app_path = app_path
        self.database = database
        self.duration_s = duration_s
        self.url = url
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pillbox-drill-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.broker: SQLBroker | None = None

    # -- phases --------------------------------------------------------------------------
    def run(self, say: Any = print) -> Outcome:
        base_url = self.url or self._start_app(say)
        try:
            self._wait_ready(base_url)
            self.broker = open_broker(self.database, pool_size=2)
            with httpx.Client(base_url=base_url, timeout=10) as client:
                incident = self._prepare(client, GOOD_TEMPLATE, "good org")
                traffic = Traffic(base_url, incident)
                started = time.time()
                say(f"streaming traffic for {self.duration_s:.0f}s; injecting "
                    f"{self.scenario.name} at {self.duration_s / 4:.0f}s")
                traffic.start()
                time.sleep(self.duration_s / 4)
                injected_at, poison_id = self._inject(client)
                say(f"injected {self.scenario.name}: message {poison_id}")
                time.sleep(self.duration_s * 3 / 4)
                traffic.stop()
            say("traffic stopped; waiting for the backlog and the quarantine to settle")
            self._settle(traffic, poison_id)
            ended = time.time()
            return self._collect(traffic, started, injected_at, ended, poison_id)
        finally:
            self._stop_app()

    def _start_app(self, say: Any) -> str:
        port = _free_port()
        env = {**os.environ, "PILLBOX_DATABASE_URL": self.database,
               "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
        log = open(self.workdir / "pillbox-run.log", "wb")  # noqa: SIM115 - child owns it
        say(f"starting: pillbox run {self.app_path} (log: {self.workdir / 'pillbox-run.log'})")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pillbox", "run", self.app_path, "--bind",
             f"127.0.0.1:{port}", "--workers", "2"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        return f"http://127.0.0.1:{port}"

    def _wait_ready(self, base_url: str) -> None:
        deadline = time.time() + READY_TIMEOUT_S
        while time.time() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"pillbox run exited with code {self.proc.returncode}; "
                                   f"see {self.workdir / 'pillbox-run.log'}")
            try:
                if httpx.get(f"{base_url}/_pillbox/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the app at {base_url} was not ready within {READY_TIMEOUT_S:.0f}s")

    def _prepare(self, client: httpx.Client, template: str | None, name: str) -> int:
        settings = {} if template is None else {"welcome_template": template}
        return self._incident(client, name, settings)

    @staticmethod
    def _incident(client: httpx.Client, name: str, settings: dict[str, Any]) -> int:
        org = client.post("/orgs", json={"name": name, "settings": settings})
        org.raise_for_status()
        incident = client.post("/incidents", json={"org_id": org.json()["id"],
                                                   "title": f"drill: {name}"})
        incident.raise_for_status()
        return int(incident.json()["id"])

    def _inject(self, client: httpx.Client) -> tuple[float, str]:
        incident = self._incident(client, f"{self.scenario.name} org",
                                  self.scenario.org_settings)
        injected_at = time.time()
        response = client.post(f"/incidents/{incident}/members", json={"username": "newcomer"})
        response.raise_for_status()
        return injected_at, str(response.json()["message_id"])

    def _settle(self, traffic: Traffic, poison_id: str) -> None:
        assert self.broker is not None
        deadline = time.time() + SETTLE_TIMEOUT_S
        good_ids = {p.message_id for p in traffic.published}
        while time.time() < deadline:
            pending = [d for d in self.broker.deliveries(state="available", limit=100_000)
                       + self.broker.deliveries(state="leased", limit=100_000)
                       if d.message_id in good_ids or d.message_id == poison_id]
            if not pending:
                return
            time.sleep(0.2)

    def _collect(self, traffic: Traffic, started: float, injected_at: float, ended: float,
                 poison_id: str) -> Outcome:
        assert self.broker is not None
        broker = self.broker
        poison_rows = broker.deliveries(message_id=poison_id, subscription=WELCOME)
        poison = broker.delivery(poison_rows[0].id) if poison_rows else None
        good_ids = {(p.message_id, p.subscription) for p in traffic.published}
        good = [d for d in broker.deliveries(limit=1_000_000)
                if (d.message_id, d.subscription) in good_ids]
        return Outcome(
            scenario=self.scenario, database=self.database, started_at=started,
            injected_at=injected_at, ended_at=ended, traffic=traffic, poison_id=poison_id,
            poison=poison, crashes=broker.crashes(since=started - 1, limit=10_000), good=good,
            thread_errors=broker.events(kind="thread_error", since=started - 1, limit=1000),
            log_path=str(self.workdir / "pillbox-run.log"))

    def _stop_app(self) -> None:
        if self.broker is not None:
            self.broker.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
