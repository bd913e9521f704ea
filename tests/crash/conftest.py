"""Runs the real `pillbox run` on the mode-driven fixture app (tests/fixtures/crashapp.py) and
gives tests the broker to assert on what was stored."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pillbox.broker import open_broker

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


class Running:
    """One `pillbox run crashapp:app` process tree."""

    def __init__(self, db_url: str, workdir: Path, args: list[str], env: dict[str, str],
                 cgroup: Path | None = None) -> None:
        self.db_url = db_url
        self.log_path = workdir / "handler.log"
        self.out_path = workdir / "supervisor.out"
        path = os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")])
        full_env = {**os.environ, "CRASHAPP_DATABASE": db_url,
                    "CRASHAPP_LOG": str(self.log_path), "PYTHONPATH": path, **env}
        self.out = open(self.out_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pillbox", "run", "crashapp:app", *args],
            cwd=workdir, env=full_env, stdout=self.out, stderr=subprocess.STDOUT,
            preexec_fn=None if cgroup is None else lambda: join_cgroup(cgroup),
        )
        self.broker = open_broker(db_url, pool_size=2)
        self.descendants: set[int] = set()

    def children(self) -> list[psutil.Process]:
        try:
            found = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.descendants |= {p.pid for p in found}
        return found

    def roles(self) -> dict[int, str]:
        """pid → role ("worker", "lane", "web", "cron") of the living children."""
        found = {}
        for child in self.children():
            try:
                name = child.name()
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.Error:
                continue
            if name.startswith("pb-"):
                found[child.pid] = name[3:]
        return found

    def handler_runs(self) -> list[list[str]]:
        """Lines `message_id attempt what pid` the fixture's handler wrote."""
        if not self.log_path.exists():
            return []
        return [line.split() for line in self.log_path.read_text().splitlines() if line]

    def output(self) -> str:
        self.out.flush()
        return self.out_path.read_text()

    def stop(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.children()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        self.out.close()
        self.broker.close()
        return int(self.proc.returncode)

    def kill(self) -> None:
        for child in self.children():
            child.kill()
        self.proc.kill()
        self.proc.wait()


def join_cgroup(cgroup: Path) -> None:
    """In the forked child before exec: move this process into `cgroup`."""
    (cgroup / "cgroup.procs").write_text(str(os.getpid()))


@pytest.fixture
def run_app(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start `pillbox run crashapp:app` against a database; always cleaned up."""
    started: list[Running] = []

    def _start(db_url: str, *args: str, cgroup: Path | None = None, **env: Any) -> Running:
        # the schema and subscriptions exist once the supervisor's inspect child ran; publish
        # through our own broker after that
        running = Running(db_url, tmp_path, list(args), {k: str(v) for k, v in env.items()},
                          cgroup)
        started.append(running)
        return running

    yield _start
    for running in started:
        if running.proc.poll() is None:
            running.kill()
        running.out.close()


@pytest.fixture
def fixture_app(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fixture app bound to the test database, for publishing."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    monkeypatch.setenv("CRASHAPP_DATABASE", db_url)
    import crashapp

    module = importlib.reload(crashapp)
    yield module.app
    module.app.close()
