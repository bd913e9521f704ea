"""The web tier: a dying web process never makes the port refuse connections; unhandled
exceptions become 500s with a stored error; health and readiness answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from helpers import eventually
from pillbox.broker import open_broker

pytestmark = pytest.mark.crash

CRASHES = 20
CRASH_SPACING_S = 0.5
STREAM_LIMIT_S = 90.0


def test_web_process_segfaults_never_refuse_a_connection(web_run, db_url, capsys):
    run = web_run("--web-workers", "4", "--workers", "0")
    counts = {"ok": 0, "refused": 0, "other": 0}
    errors: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        deadline = time.monotonic() + STREAM_LIMIT_S
        fresh_connections = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(base_url=run.base, timeout=30, limits=fresh_connections) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.get("/ok")
                    counts["ok" if response.status_code == 200 else "other"] += 1
                except httpx.ConnectError as exc:
                    counts["refused"] += 1
                    errors.append(repr(exc))
                except httpx.HTTPError as exc:
                    counts["other"] += 1
                    errors.append(repr(exc))
                time.sleep(0.005)

    streamer = threading.Thread(target=stream)
    streamer.start()
    crash_failures = 0
    with httpx.Client(base_url=run.base, timeout=30) as client:
        for _ in range(CRASHES):
            try:
                client.get("/crash")
            except httpx.HTTPError:
                crash_failures += 1
            time.sleep(CRASH_SPACING_S)  # pacing the load, not synchronising
    broker = open_broker(db_url, pool_size=1)
    eventually(lambda: len(broker.crashes(limit=100)) >= CRASHES, timeout_s=60)
    stop.set()
    streamer.join()
    with capsys.disabled():
        print(f"\nweb under {CRASHES} segfaults: {counts['ok']} ok, {counts['refused']} refused, "
              f"{counts['other']} other failures; {crash_failures} crashing requests failed")
    assert counts["refused"] == 0, errors[:5]
    assert counts["other"] <= CRASHES, errors[:5]  # only requests inside a dying process
    assert counts["ok"] > 100
    assert crash_failures == CRASHES
    records = broker.crashes(limit=100)
    assert all(r.work_type == "web" and r.cause == "segfault" for r in records)
    assert any("GET /crash" in str(r.in_flight) for r in records)
    assert "in crash" in records[0].traceback
    broker.close()
    assert run.stop() == 0


def test_unhandled_exception_is_a_500_with_a_stored_error(web_run, db_url):
    run = web_run("--web-workers", "1", "--workers", "0")
    response = httpx.get(f"{run.base}/boom", timeout=10)
    assert response.status_code == 500
    broker = open_broker(db_url, pool_size=1)
    events = eventually(lambda: broker.events(kind="web_error"), timeout_s=10)
    assert events[0]["detail"].startswith("GET /boom")
    assert "ZeroDivisionError: handler bug on purpose" in events[0]["detail"]
    assert httpx.get(f"{run.base}/_pillbox/health", timeout=5).json() == {"status": "ok"}
    assert httpx.get(f"{run.base}/_pillbox/ready", timeout=5).json() == {"status": "ready"}
    assert httpx.get(f"{run.base}/ok", timeout=5).status_code == 200
    broker.close()
    assert run.stop() == 0


@pytest.mark.parametrize(("web", "named"), [
    ('"no_such_module:asgi"', "cannot import 'no_such_module'"),
    ("5", "must be an ASGI app"),
    ('"json:no_such_attribute"', "module 'json' has no 'no_such_attribute'"),
    ("lambda: 1", "is not an ASGI app"),
])
def test_a_bad_app_web_stops_pillbox_run_before_anything_starts(tmp_path, web, named):
    """A bad App.web once started a web tier that crash-looped forever."""
    (tmp_path / "badweb.py").write_text(
        "from pillbox import App\n"
        f"app = App('badweb', database='sqlite:///{tmp_path}/badweb.db')\n"
        f"app.web = {web}\n")
    done = subprocess.run([sys.executable, "-m", "pillbox", "run", "badweb:app", "--bind",
                           "127.0.0.1:0"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "App.web" in done.stderr and named in done.stderr, done.stderr
    assert "supervisor.started" not in done.stdout


RAW_APP = """
from pillbox import App
app = App('rawweb', database={db!r})

async def asgi(scope, receive, send):
    if scope['type'] == 'lifespan':
        {lifespan}
    await send({{'type': 'http.response.start', 'status': 200, 'headers': []}})
    await send({{'type': 'http.response.body', 'body': b'hello'}})

app.web = asgi
"""


def _start_raw(tmp_path, lifespan: str) -> tuple[subprocess.Popen[str], int, str]:
    db = f"sqlite:///{tmp_path}/raw.db"
    (tmp_path / "rawweb.py").write_text(RAW_APP.format(db=db, lifespan=lifespan))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pillbox", "run", "rawweb:app", "--bind", f"127.0.0.1:{port}",
         "--web-workers", "1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    return proc, port, db


def test_a_raw_asgi_app_whose_lifespan_startup_raises_is_a_crash_not_a_healthy_server(tmp_path):
    """uvicorn's lifespan="auto" took such an app for one without lifespan support and
    served it, answering ready."""
    proc, port, db = _start_raw(
        tmp_path, "await receive(); raise RuntimeError('db not reachable at startup')")
    try:
        broker = open_broker(db)

        def crashed():
            records = [c for c in broker.crashes() if c.work_type == "web"]
            assert records
            return records

        record = eventually(crashed, timeout_s=60, interval_s=0.2)[0]
        assert "db not reachable at startup" in record.log_tail, record.log_tail
        try:  # nobody serves: the socket is held, but no web process finishes starting
            status = httpx.get(f"http://127.0.0.1:{port}/_pillbox/ready", timeout=2).status_code
        except httpx.HTTPError:
            status = None
        assert status != 200
        broker.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_a_raw_asgi_app_without_lifespan_support_is_served(tmp_path):
    proc, port, _ = _start_raw(tmp_path, "raise NotImplementedError('no lifespan here')")
    try:
        def served():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/x", timeout=2).text == "hello"
            except httpx.HTTPError:
                return False

        assert eventually(served, timeout_s=60, interval_s=0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
