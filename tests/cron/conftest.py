"""Real processes running the cron fixture app (tests/fixtures/cronapp.py): bare children
(`python -m pillbox.child ROLE cronapp:app`, several at once) and the whole `pillbox run`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pillbox.broker import SQLBroker, open_broker
from pillbox.protocol import parse_lines

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


class Process:
    """One process of the cron app, its output in a file, its events (if a child) counted."""

    def __init__(self, argv: list[str], env: dict[str, str], workdir: Path, name: str,
                 events: bool) -> None:
        self.name = name
        self.out_path = workdir / f"{name}.out"
        self.out = open(self.out_path, "wb")  # noqa: SIM115 - closed in stop()
        self.events: Counter[str] = Counter()
        read_fd = write_fd = -1
        if events:
            read_fd, write_fd = os.pipe()
            env = {**env, "PILLBOX_EVENTS_FD": str(write_fd)}
        self.proc = subprocess.Popen(argv, env=env, cwd=workdir, stdout=self.out,
                                     stderr=subprocess.STDOUT,
                                     pass_fds=(write_fd,) if events else ())
        if events:
            os.close(write_fd)
            threading.Thread(target=self._read_events, args=(read_fd,), daemon=True).start()

    def _read_events(self, fd: int) -> None:
        buffer = b""
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(4096):
                found, buffer = parse_lines(buffer + chunk)
                self.events.update(event["t"] for event in found)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        self.out.flush()
        return self.out_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 20) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class CronApp:
    """Starts processes of cronapp against one database and reads what they recorded."""

    def __init__(self, db_url: str, workdir: Path) -> None:
        self.db_url = db_url
        self.workdir = workdir
        self.log_path = workdir / "runs.log"
        self.mark_path = workdir / "poison.mark"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(FIXTURES), os.environ.get("PYTHONPATH", "")]),
            "CRONAPP_DATABASE": db_url,
            "CRONAPP_LOG": str(self.log_path),
            "CRONAPP_POISON_MARK": str(self.mark_path),
            "PILLBOX_RUN_DIR": str(workdir),
        }
        self.processes: list[Process] = []
        self._broker: SQLBroker | None = None

    @property
    def broker(self) -> SQLBroker:
        """The test's own broker (creating the schema if nobody has yet)."""
        if self._broker is None:
            self._broker = open_broker(self.db_url, pool_size=2)
        return self._broker

    def child(self, role: str, crons: str = "every-second") -> Process:
        """`python -m pillbox.child ROLE cronapp:app`, with an events pipe of its own."""
        env = {**self.env, "CRONAPP_CRONS": crons}
        name = f"{role}-{len(self.processes)}"
        process = Process([sys.executable, "-m", "pillbox.child", role, "cronapp:app"], env,
                          self.workdir, name, events=True)
        self.processes.append(process)
        return process

    def run(self, *args: str, crons: str = "every-second") -> Process:
        """The real `pillbox run cronapp:app ARGS`."""
        env = {**self.env, "CRONAPP_CRONS": crons}
        env.pop("PILLBOX_RUN_DIR")
        process = Process([sys.executable, "-m", "pillbox", "run", "cronapp:app", *args], env,
                          self.workdir, f"run-{len(self.processes)}", events=False)
        self.processes.append(process)
        return process

    def runs(self) -> list[list[str]]:
        """Lines `cron tick attempt what pid` noted by the cron functions."""
        if not self.log_path.exists():
            return []
        return [line.split() for line in self.log_path.read_text().splitlines() if line]

    def ticks(self, cron: str) -> list[tuple[str, bool]]:
        """Every claimed tick of a cron as (ISO time, published), oldest first."""
        with self.broker.transaction() as cur:
            cur.execute("SELECT cron, tick_at, message_id FROM pillbox_cron_ticks "
                        "ORDER BY tick_at")
            rows = cur.fetchall()
        return [(datetime.fromtimestamp(at, UTC).isoformat(), message_id != "")
                for name, at, message_id in rows if name == cron]

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.out.close()
        if self._broker is not None:
            self._broker.close()


@pytest.fixture
def cronapp(db_url: str, tmp_path: Path) -> Iterator[CronApp]:
    """Processes of tests/fixtures/cronapp.py on the test database; all killed at the end."""
    app = CronApp(db_url, tmp_path)
    yield app
    app.close()

