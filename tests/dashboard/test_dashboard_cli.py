"""`pillbox dashboard`: the dashboard served alone, with a token or in loopback-only dev mode."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner
from dash_support import BEARER, TOKEN, make_dead

from helpers import eventually
from pillbox.broker import SQLBroker
from pillbox.cli.dashboard import dashboard

# `pillbox dashboard` once registered in pillbox.cli; the command object itself until then.
COMMAND = [sys.executable, "-c", "import sys; from pillbox.cli.dashboard import dashboard; "
           "sys.exit(dashboard(auto_envvar_prefix='PILLBOX'))"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dev_mode_refuses_a_non_loopback_address(db_url: str) -> None:
    result = CliRunner().invoke(dashboard, ["--dev", "--bind", "0.0.0.0:8100",
                                            "--database", db_url])
    assert result.exit_code == 2
    assert "only binds a loopback address" in result.output


def test_without_a_token_it_says_how_to_set_one(db_url: str) -> None:
    result = CliRunner().invoke(dashboard, ["--database", db_url], env={
        "PILLBOX_DASHBOARD_TOKEN": ""})
    assert result.exit_code == 2
    assert "PILLBOX_DASHBOARD_TOKEN" in result.output


def test_serves_the_dashboard_of_a_database(db_url: str, broker: SQLBroker) -> None:
    dead_id = make_dead(broker, {"n": 1})
    port = free_port()
    env = {**os.environ, "PILLBOX_DASHBOARD_TOKEN": TOKEN}
    proc = subprocess.Popen([*COMMAND, "--bind", f"127.0.0.1:{port}", "--database", db_url],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                return httpx.get(f"{base}/_pillbox/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(up, timeout_s=30, interval_s=0.05)
        assert httpx.get(base + "/").headers["location"] == "/_pillbox/"
        assert httpx.get(f"{base}/_pillbox/api/dead").status_code == 401
        dead = httpx.get(f"{base}/_pillbox/api/dead", headers=BEARER).json()["dead"]
        assert [d["id"] for d in dead] == [dead_id]
        replay = httpx.post(f"{base}/_pillbox/api/dead/{dead_id}/replay", headers=BEARER)
        assert replay.status_code == 200
        assert broker.delivery(dead_id).state == "available"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("pillbox dashboard did not stop on SIGTERM")


def test_a_port_in_use_is_a_clean_error_like_pillbox_run(db_url: str, broker: SQLBroker) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([*COMMAND, "--dev", "--bind", f"127.0.0.1:{port}",
                               "--database", db_url], capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr  # not 3, status's "attention"
    assert f"Error: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Errno" not in done.stderr and "http://" not in done.stderr
    out_of_range = CliRunner().invoke(dashboard, ["--dev", "--bind", "127.0.0.1:99999",
                                                  "--database", db_url])
    assert out_of_range.exit_code == 2 and "port 0-65535" in out_of_range.output
