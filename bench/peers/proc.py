"""A worker command under a small restart-on-exit supervisor, like systemd `Restart=always`
with its default `RestartSec=100ms`. When the root process exits, its leftover descendants
are killed (by pid) and it is started again. `restarts` counts the exits of the tool's own
root process.

Stop: SIGTERM to the root, then after `grace_s` SIGKILL to every descendant ever seen, by pid
(psutil checks the process start time, so a reused pid is never hit).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil

RESTART_SEC = 0.1


@dataclass
class Exit:
    at: float
    code: int | None


@dataclass
class Supervised:
    argv: list[str]
    env: dict[str, str]
    log_path: str
    cwd: str
    spawned_at: float = 0.0
    exits: list[Exit] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None
    _known: dict[int, psutil.Process] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    @property
    def restarts(self) -> int:
        return len(self.exits)

    @property
    def root(self) -> psutil.Process | None:
        with self._lock:
            if self._proc is None:
                return None
            return self._known.get(self._proc.pid)

    def _spawn(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        finally:
            log.close()
        with self._lock:
            self._proc = proc
            if not self.spawned_at:
                self.spawned_at = time.time()
            with contextlib.suppress(psutil.Error):
                self._known[proc.pid] = psutil.Process(proc.pid)

    def descendants(self) -> list[psutil.Process]:
        """Living descendants of the current root (and remembers them for the stop)."""
        root = self.root
        if root is None:
            return []
        try:
            kids = root.children(recursive=True)
        except psutil.Error:
            return []
        with self._lock:
            for kid in kids:
                self._known.setdefault(kid.pid, kid)
        return kids

    def _watch(self) -> None:
        scans = 0
        while not self._stop.is_set():
            proc = self._proc
            assert proc is not None
            if scans % 10 == 0:  # every 0.5 s: /proc scans cost CPU on this small machine
                self.descendants()
            scans += 1
            try:
                code = proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            if self._stop.is_set():
                return
            self.exits.append(Exit(time.time(), code))
            self._kill_known()
            if self._stop.wait(RESTART_SEC):
                return
            self._spawn()

    def _kill_known(self) -> None:
        with self._lock:
            known = list(self._known.values())
        for proc in known:
            with contextlib.suppress(psutil.Error):
                if proc.is_running():
                    proc.kill()

    def stop(self, grace_s: float = 10.0) -> dict[str, object]:
        """SIGTERM the root; SIGKILL everything left after grace_s. Returns how it went."""
        self.descendants()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        proc = self._proc
        started = time.monotonic()
        graceful = True
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                graceful = False
        leftovers = 0
        with self._lock:
            known = list(self._known.values())
        for p in known:
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    leftovers += 1
                    p.kill()
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        return {"graceful": graceful, "stop_s": round(time.monotonic() - started, 2),
                "killed_leftovers": leftovers}


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """user+sys of the given processes and their reaped children."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total
