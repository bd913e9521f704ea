"""One supervised child process: spawn, read its event pipe and output, track what it has in
flight, measure its memory, escalate kills (dump stacks → TERM → KILL), reap it."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import psutil

from pillbox import defaults
from pillbox.protocol import parse_lines
from pillbox.supervisor.attribution import Started

WORK_TYPE = {"worker": "worker", "lane": "worker", "web": "web", "cron": "cron",
             "standby": "worker"}

#: Succeeded deliveries remembered per child, enough to cover every ack it may have pending.
FINISHED_KEPT = 4096


@dataclass
class ChildSpec:
    name: str  # e.g. "worker.1"
    role: str  # worker | lane | web | cron
    pass_fds: tuple[int, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def work_type(self) -> str:
        return WORK_TYPE[self.role]


class ChildProcess:
    def __init__(self, spec: ChildSpec, app_path: str, run_dir: str) -> None:
        self.spec = spec
        self.app_path = app_path
        self.run_dir = run_dir
        self.pid = 0
        self.popen: subprocess.Popen[bytes] | None = None
        self.events_fd = -1
        self.output_fd = -1
        self.started_at = 0.0
        self.ready = False
        self.last_heartbeat = 0.0
        self.started: dict[int, Started] = {}
        #: Deliveries whose handler succeeded, oldest first; their ack may still be pending.
        self.finished: dict[int, str] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self.log_tail: collections.deque[str] = collections.deque(maxlen=defaults.LOG_TAIL_LINES)
        self.peak_rss = 0
        self.killed_for: str | None = None
        self.blamed: int | None = None
        self.kill_at: float | None = None
        self.restart_at: float | None = None
        self.standing_by = False
        self.go_fd = -1
        self._event_buf = b""
        self._out_buf = b""
        self._proc: psutil.Process | None = None

    @property
    def alive(self) -> bool:
        return self.pid != 0

    @property
    def owner(self) -> str:
        """The lease owner name the child's consumer uses."""
        return f"{socket.gethostname()}:{self.pid}"

    # -- lifecycle -----------------------------------------------------------------------
    def spawn(self, now: float) -> None:
        events_r, events_w = os.pipe()
        out_r, out_w = os.pipe()
        env = {**os.environ, **self.spec.env, "PILLBOX_EVENTS_FD": str(events_w),
               "PILLBOX_RUN_DIR": self.run_dir, "PILLBOX_CHILD": self.spec.name,
               "PYTHONUNBUFFERED": "1"}
        extra_fds: tuple[int, ...] = ()
        if self.spec.role == "standby":
            go_r, self.go_fd = os.pipe()
            env["PILLBOX_STANDBY_FD"] = str(go_r)
            extra_fds = (go_r,)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "pillbox.child", self.spec.role, self.app_path],
            stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w, env=env,
            pass_fds=(events_w, *self.spec.pass_fds, *extra_fds), process_group=0,
        )
        os.close(events_w)
        os.close(out_w)
        for fd in extra_fds:
            os.close(fd)
        os.set_blocking(events_r, False)
        os.set_blocking(out_r, False)
        self.pid = self.popen.pid
        self.events_fd, self.output_fd = events_r, out_r
        self.started_at = self.last_heartbeat = now
        self.ready = False
        self.started.clear()
        self.finished.clear()
        self.requests.clear()
        self.log_tail.clear()
        self.peak_rss = 0
        self.killed_for = self.blamed = self.kill_at = self.restart_at = None
        self._event_buf = self._out_buf = b""
        try:
            self._proc = psutil.Process(self.pid)
        except psutil.Error:
            self._proc = None

    def reap(self) -> tuple[int, int] | None:
        """(wait status, peak RSS bytes from rusage) once the child has exited, else None."""
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            return 0, 0
        if pid == 0:
            return None
        if self.popen is not None:
            self.popen.returncode = status
        return status, int(usage.ru_maxrss) * 1024

    def activate(self, spec: ChildSpec, now: float) -> bool:
        """Hand a booted standby the slot (name and role) of a child that died."""
        if not (self.alive and self.standing_by and self.go_fd >= 0):
            return False
        try:
            os.write(self.go_fd, f"{spec.name} {spec.role}\n".encode())
        except OSError:
            return False
        os.close(self.go_fd)
        self.go_fd = -1
        self.spec = spec
        self.standing_by = False
        self.started_at = self.last_heartbeat = now
        return True

    def close_pipes(self) -> None:
        if self.go_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.go_fd)
            self.go_fd = -1
        self.standing_by = False
        for fd in (self.events_fd, self.output_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.events_fd = self.output_fd = -1
        self.pid = 0
        self._proc = None

    # -- reading -------------------------------------------------------------------------
    def read_events(self, now: float) -> list[dict[str, Any]]:
        data = _read_all(self.events_fd)
        if not data:
            return []
        events, self._event_buf = parse_lines(self._event_buf + data)
        for event in events:
            self._apply(event, now)
        return events

    def _apply(self, event: dict[str, Any], now: float) -> None:
        kind = event.get("t")
        self.last_heartbeat = now
        if kind == "ready":
            self.ready = True
        elif kind == "standby":
            self.standing_by = True
        elif kind == "start":
            self.started[int(event["d"])] = Started(
                delivery_id=int(event["d"]), token=str(event["k"]), subscription=str(event["s"]),
                message_id=str(event["m"]), thread=event.get("th"), started_at=now,
                timeout_s=float(event.get("to") or defaults.TIMEOUT_S),
                memory_limit_bytes=event.get("ml"))
        elif kind == "done":
            done = self.started.pop(int(event["d"]), None)
            if done is not None and event.get("ok"):
                self.finished[done.delivery_id] = done.token
                while len(self.finished) > FINISHED_KEPT:
                    del self.finished[next(iter(self.finished))]
        elif kind == "req":
            self.requests[str(event["r"])] = {"method": event.get("m"), "path": event.get("p"),
                                              "started_at": now}
        elif kind == "reqdone":
            self.requests.pop(str(event["r"]), None)

    def read_output(self) -> list[str]:
        data = _read_all(self.output_fd)
        if not data:
            return []
        *lines, self._out_buf = (self._out_buf + data).split(b"\n")
        if len(self._out_buf) > 65536:  # a line without end: cut it
            lines.append(self._out_buf)
            self._out_buf = b""
        text = [line.decode(errors="replace").rstrip("\r") for line in lines]
        self.log_tail.extend(text)
        return text

    # -- watching ------------------------------------------------------------------------
    def sample_rss(self) -> int:
        if self._proc is None:
            return 0
        try:
            rss = int(self._proc.memory_info().rss)
        except psutil.Error:
            return 0
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def memory_limit(self, process_limit: int | None) -> int | None:
        limits = [s.memory_limit_bytes for s in self.started.values() if s.memory_limit_bytes]
        if process_limit:
            limits.append(process_limit)
        return min(limits) if limits else None

    def overdue(self, now: float) -> Started | None:
        """The first delivery running past its timeout."""
        for started in self.started.values():
            if now - started.started_at > started.timeout_s:
                return started
        return None

    # -- killing -------------------------------------------------------------------------
    def kill(self, reason: str, now: float, blamed: int | None = None,
             grace_s: float = defaults.KILL_GRACE_S,
             dump_wait_s: float = defaults.DUMP_WAIT_S) -> None:
        """Dump every thread's stack into the fault file (SIGUSR1: faulthandler, at once)
        and where async handlers await (SIGUSR2: Python code, as soon as the main thread
        runs), then end the process: SIGTERM and SIGKILL after `grace_s` (0: SIGKILL after
        `dump_wait_s`, the time the dumps get)."""
        if self.killed_for is not None or not self.alive:
            return
        self.killed_for, self.blamed = reason, blamed
        self.signal(signal.SIGUSR1)
        self.signal(signal.SIGUSR2)
        if grace_s > 0:
            self.signal(signal.SIGTERM)
        self.kill_at = now + max(grace_s, dump_wait_s)

    def escalate(self, now: float) -> None:
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            self.signal_group(signal.SIGKILL)

    def signal(self, signum: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def signal_group(self, signum: int) -> None:
        """Signal the child's whole process group (it and anything it started)."""
        if self.alive:
            try:
                os.killpg(self.pid, signum)
            except (ProcessLookupError, PermissionError):
                self.signal(signum)


def _read_all(fd: int) -> bytes:
    if fd < 0:
        return b""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
