"""Runs the real `pillbox run webapp:app` on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from helpers import eventually

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


class WebRun:
    def __init__(self, db_url: str, workdir: Path, *args: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "WEBAPP_DATABASE": db_url,
               "PYTHONPATH": os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")])}
        self.out_path = workdir / "supervisor.out"
        self.out = open(self.out_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pillbox", "run", "webapp:app", "--bind",
             f"127.0.0.1:{self.port}", *args],
            cwd=workdir, env=env, stdout=self.out, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.proc.poll() is None, self.out_path.read_text()[-2000:]
            try:
                return httpx.get(f"{self.base}/_pillbox/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(ready, timeout_s=60, interval_s=0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.out.close()
        return int(self.proc.returncode)


@pytest.fixture
def web_run(db_url: str, tmp_path: Path) -> Iterator[type]:
    runs: list[WebRun] = []

    def start(*args: str) -> WebRun:
        run = WebRun(db_url, tmp_path, *args)
        runs.append(run)
        run.wait_ready()
        return run

    yield start  # type: ignore[misc]
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
        run.out.close()
