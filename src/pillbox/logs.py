"""The supervisor's log: structured JSON lines (or readable lines on a TTY), with children's
output forwarded under a per-source rate limit that counts what it suppressed."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from pillbox import defaults


@dataclass
class _Bucket:
    window_start: float = 0.0
    sent: int = 0
    suppressed: int = 0


class Log:
    def __init__(self, stream: TextIO | None = None, json_mode: bool | None = None,
                 lines_per_s: int = defaults.LOG_LINES_PER_S) -> None:
        self.stream = stream or sys.stdout
        self.json_mode = (not self.stream.isatty()) if json_mode is None else json_mode
        self.lines_per_s = lines_per_s
        self._buckets: dict[str, _Bucket] = {}

    def event(self, name: str, message: str, level: str = "info", **fields: Any) -> None:
        """One line for a named event (e.g. "child.crashed")."""
        if self.json_mode:
            record = {"ts": round(time.time(), 3), "level": level, "event": name, "msg": message,
                      **fields}
            self._write(json.dumps(record, default=str))
        else:
            stamp = time.strftime("%H:%M:%S")
            self._write(f"{stamp} {level.upper():5} {message}")

    def child_line(self, source: str, line: str, now: float) -> None:
        """Forward one line of a child's output unless its source is over the rate limit."""
        bucket = self._buckets.setdefault(source, _Bucket(window_start=now))
        if now - bucket.window_start >= 1.0:
            self.flush_suppressed(source, bucket)
            bucket.window_start, bucket.sent = now, 0
        if bucket.sent >= self.lines_per_s:
            bucket.suppressed += 1
            return
        bucket.sent += 1
        if self.json_mode:
            self._write(json.dumps({"ts": round(now, 3), "source": source, "line": line}))
        else:
            self._write(f"[{source}] {line}")

    def flush_suppressed(self, source: str, bucket: _Bucket | None = None) -> None:
        bucket = bucket or self._buckets.get(source)
        if bucket and bucket.suppressed:
            self.event("log.suppressed", f"{bucket.suppressed} line(s) from {source} suppressed "
                       "(rate limit)", level="warning", source=source,
                       suppressed=bucket.suppressed)
            bucket.suppressed = 0

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass
