"""The child → supervisor channel: one JSON object per line on an inherited pipe.

Lines stay under PIPE_BUF (4096 bytes) so each write is atomic, and everything written before a
child dies is still readable by the supervisor afterwards.

Events ("t"): ready · hb (heartbeat) · start / done (a delivery) · req / reqdone (a web request)
"""

from __future__ import annotations

import json
import os
from typing import Any

MAX_LINE = 4000


class Reporter:
    """Child side: writes events to the supervisor (a no-op when run outside `pillbox run`)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def send(self, event: str, **fields: Any) -> None:
        if self.fd is None:
            return
        line = json.dumps({"t": event, **fields}, separators=(",", ":"))
        if len(line) > MAX_LINE:
            line = json.dumps({"t": event, **{k: v for k, v in fields.items()
                                              if not isinstance(v, str) or len(v) < 200}})
        data = (line + "\n").encode()
        fd = self.fd
        if fd is None:
            return
        try:  # no lock: a write under PIPE_BUF to a pipe is atomic, and threads must not
            # queue here (a crash in another thread while they wait loses their events)
            os.write(fd, data)
        except (BrokenPipeError, OSError):
            # the supervisor is gone: there is nobody left to report to
            self.fd = None


def parse_lines(buffer: bytes) -> tuple[list[dict[str, Any]], bytes]:
    """Complete events in `buffer`, and the unfinished tail."""
    *lines, rest = buffer.split(b"\n")
    events = []
    for line in lines:
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events, rest
