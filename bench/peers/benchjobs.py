"""The job bodies every system runs, and the record they leave.

A job appends one fixed-width line with `os.write` to the O_APPEND file named by $BENCH_OUT,
so the harness counts executions, duplicates and timings without asking the tool under test.

    kind id start end pid ppid

kinds: n = no-op, g = good (sleeps 50 ms), p = poison (segfaults), h = hang (sleeps forever).
A poison or hang job writes a start line (kind P or H, end 0) before it misbehaves.
"""

from __future__ import annotations

import ctypes
import os
import time

LINE = "{kind} {i:08d} {start:17.6f} {end:17.6f} {pid:7d} {ppid:7d}\n"
LINE_BYTES = len(LINE.format(kind="n", i=0, start=0.0, end=0.0, pid=0, ppid=0))
GOOD_SLEEP_S = 0.05

_fd: tuple[int, int] | None = None  # (pid that opened it, fd)


def _out() -> int:
    global _fd
    pid = os.getpid()
    if _fd is None or _fd[0] != pid:
        path = os.environ["BENCH_OUT"]
        _fd = (pid, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
    return _fd[1]


def _write(kind: str, i: int, start: float, end: float) -> None:
    line = LINE.format(kind=kind, i=i, start=start, end=end, pid=os.getpid(), ppid=os.getppid())
    os.write(_out(), line.encode())


def poison_body() -> None:
    """A NULL read: SIGSEGV inside C, no Python exception."""
    ctypes.string_at(0)


def hang_body() -> None:
    time.sleep(10**6)


def run(kind: str, i: int) -> None:
    start = time.time()
    if kind == "p":
        _write("P", i, start, 0.0)
        poison_body()
    elif kind == "h":
        _write("H", i, start, 0.0)
        hang_body()
    elif kind == "g":
        time.sleep(GOOD_SLEEP_S)
    _write(kind, i, start, time.time())


def read(path: str) -> list[tuple[str, int, float, float, int, int]]:
    """Every complete line of a results file, parsed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    rows = []
    for raw in data.splitlines():
        parts = raw.split()
        if len(parts) != 6:
            continue
        rows.append((parts[0].decode(), int(parts[1]), float(parts[2]), float(parts[3]),
                     int(parts[4]), int(parts[5])))
    return rows


def count(path: str) -> int:
    """Lines written so far (cheap: the file size)."""
    try:
        return os.stat(path).st_size // LINE_BYTES
    except FileNotFoundError:
        return 0
