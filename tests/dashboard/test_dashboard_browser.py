"""The dashboard in a real headless Chromium, against a real `pillbox run` (web + worker).

An operator logs in, sees a subscription with a dead message (a handler bug) and one with a
poison pill (a segfault), pauses the first, replays its dead message once the bug is "fixed",
and watches it get delivered after resuming, without reloading the page. Payloads carrying
markup show as text. Without the token everything is 401.

Needs Chromium (`apt-get install -y chromium`) and Playwright for Python (`pip install
playwright`; never `playwright install`). Skipped locally when either is missing; fails under
CI=true. SQLite only: the engines' parity is covered by the API tests.

UPDATE_DOCS_SCREENSHOTS=1 also writes the overview screenshot to docs/img/dashboard.png.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dash_support import BEARER, TOKEN

from helpers import eventually
from pillbox.broker import SQLBroker, open_broker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
XSS = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI=true: the browser test must run)", pytrace=False)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Run:
    """`pillbox run dashapp:app` with one web and one worker process on a free port."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"sqlite:///{workdir / 'dash.db'}"
        self.broken = workdir / "bug-not-fixed-yet"
        self.broken.touch()
        env = {**os.environ, "DASHAPP_DATABASE": self.url, "DASHAPP_BROKEN": str(self.broken),
               "PILLBOX_DASHBOARD_TOKEN": TOKEN, "PILLBOX_DASHBOARD_REFRESH_S": "0.5",
               "PYTHONPATH": os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")])}
        self.log = workdir / "run.out"
        self._out = open(self.log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pillbox", "run", "dashapp:app", "--bind",
             f"127.0.0.1:{port}", "--workers", "1", "--web-workers", "1"],
            cwd=workdir, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                return httpx.get(f"{self.base}/_pillbox/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(ready, timeout_s=60, interval_s=0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    started = Run(tmp_path)
    try:
        started.wait_ready()
        yield started
    finally:
        started.stop()


def states(broker: SQLBroker, subscription: str) -> dict[str, str]:
    """message payload name -> delivery state."""
    return {str(d.payload.get("name")): d.state
            for d in broker.deliveries(subscription=subscription)}


def test_operator_finds_pauses_replays_and_sees_it_delivered(browser: Any, run: Run,
                                                             tmp_path: Path) -> None:
    # `browser` first: a missing browser skips before pillbox run starts
    broker = open_broker(run.url)
    try:
        _scenario(run, browser, broker, tmp_path)
    finally:
        broker.close()


def _scenario(run: Run, browser: Any, broker: SQLBroker, tmp_path: Path) -> None:
    # A handler bug kills one greeting; a poison pill segfaults the worker once.
    broker.publish("greetings", json.dumps({"name": "ann"}), time.time())
    broker.publish("greetings", json.dumps({"name": XSS, "fail": True}), time.time())
    eventually(lambda: states(broker, "greet") == {"ann": "acked", XSS: "dead"}, timeout_s=30)
    broker.publish("renders", json.dumps({"name": "poison", "crash": True}), time.time())
    eventually(lambda: states(broker, "render") == {"poison": "dead"}, timeout_s=30)
    (crash,) = broker.crashes()
    dead_id = next(d.id for d in broker.dead("greet"))

    # Without the token: 401 for pages and the API.
    anonymous = browser.new_context()
    response = anonymous.new_page().goto(f"{run.base}/_pillbox/")
    assert response is not None and response.status == 401
    assert anonymous.request.get(f"{run.base}/_pillbox/api/subscriptions").status == 401
    anonymous.close()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    response = page.goto(f"{run.base}/_pillbox/")
    assert response is not None and response.status == 401
    page.fill("#token", TOKEN)
    page.click("form button[type=submit]")
    row = page.locator('tr[data-subscription="greet"]')
    row.wait_for()
    assert row.locator("td").nth(9).inner_text().startswith("1")
    assert page.locator('tr[data-subscription="render"] td').nth(9).inner_text().startswith("1")
    page.locator("#work-types").wait_for()
    page.screenshot(path=str(tmp_path / "dashboard-overview.png"), full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        page.screenshot(path=str(REPO / "docs" / "img" / "dashboard.png"), full_page=True)

    # The dead greeting: its markup payload is text, nothing of it runs or renders.
    row.locator("a").first.click()
    page.wait_for_url("**/_pillbox/subscriptions/greet")
    payload = page.locator(f'#dead tr[data-delivery="{dead_id}"] pre.payload').inner_text()
    assert "<script>window.__pwned = 1</script>" in payload
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script").count() == 1  # the dashboard's own
    assert page.locator("#dead img").count() == 0
    assert "template missing" in page.locator("#dead").inner_text()

    # Pause: the database says so at once.
    page.click("button#pause")
    page.wait_for_url("**/_pillbox/subscriptions/greet?done=paused*")
    assert page.locator("#state").inner_text() == "paused"
    assert broker.paused() == {"greet"}

    # The bug is fixed; replay while paused: available, not delivered yet.
    run.broken.unlink()
    page.locator(f'#dead tr[data-delivery="{dead_id}"] button.replay').click()
    page.wait_for_url("**done=replayed*")
    assert f"Replayed delivery #{dead_id}" in page.locator(".flash").inner_text()
    assert broker.delivery(dead_id).state == "available"

    # Resume from a script; the open page updates itself (no reload) as it is delivered.
    page.evaluate("window.__noReload = 42")
    resumed = httpx.post(f"{run.base}/_pillbox/api/subscriptions/greet/resume", headers=BEARER)
    assert resumed.status_code == 200
    eventually(lambda: broker.delivery(dead_id).state == "acked", timeout_s=30)
    page.locator("#state", has_text="running").wait_for(timeout=15_000)
    page.locator("#dead").wait_for(state="detached", timeout=15_000)
    assert "No dead deliveries" in page.inner_text("main")
    assert page.evaluate("window.__noReload") == 42

    # The poison pill's crash: cause, process, the crashing traceback first, the payload.
    page.goto(f"{run.base}/_pillbox/crashes")
    page.click(f'a[href="/_pillbox/crashes/{crash.id}"]')
    page.wait_for_url(f"**/_pillbox/crashes/{crash.id}")
    assert page.locator("#cause").inner_text() == "segfault"
    traceback = page.locator("#traceback").inner_text()
    assert "dashapp.py" in traceback and "in render" in traceback
    assert '"crash": true' in page.locator("pre.payload").inner_text()
    context.close()
