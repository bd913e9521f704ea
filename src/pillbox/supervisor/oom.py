"""Did the kernel's OOM killer just strike? Read from the OOM-kill counter of our own cgroup.

A child killed by SIGKILL that pillbox did not send was killed from outside: by an operator,
or by the kernel because its cgroup ran out of memory. The kernel counts its OOM kills per
cgroup (v2 `memory.events`, which also counts the cgroups below; v1 `memory.oom_control`,
which counts only its own), and the children run in the supervisor's cgroup, so the
supervisor samples the counter of the cgroup it runs in and calls such a death "memory" when
the counter moved in the last few seconds. The kill increments the counter before the
victim's exit is seen, and a busy machine can take a while between the two, so a death is
compared with a sample taken a few seconds earlier, not with the latest one.
"""

from __future__ import annotations

import collections
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")

#: How far back a SIGKILL death looks for an OOM kill.
WINDOW_S = 5.0


def counter_files(proc_cgroup: str, root: Path = CGROUP_ROOT) -> list[tuple[Path, str]]:
    """(file, key) candidates for the OOM-kill counter of the cgroup in `proc_cgroup` (the text
    of /proc/self/cgroup), most specific first; the root's files last (in a container with a
    cgroup namespace, the root is the container's own cgroup)."""
    found: list[tuple[Path, str]] = []
    for line in proc_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        relative = path.strip().lstrip("/")
        if hierarchy == "0" and controllers == "":
            for base in (root, root / "unified"):
                found.append((base / relative / "memory.events", "oom_kill"))
        elif "memory" in controllers.split(","):
            found.append((root / "memory" / relative / "memory.oom_control", "oom_kill"))
    found += [(root / "memory.events", "oom_kill"),
              (root / "memory" / "memory.oom_control", "oom_kill")]
    unique: list[tuple[Path, str]] = []
    for item in found:
        if item not in unique:
            unique.append(item)
    return unique


def read_counter(candidates: list[tuple[Path, str]]) -> int:
    """The first readable counter among `candidates`, or -1 when none can be read."""
    for path, key in candidates:
        try:
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
        except (OSError, ValueError):
            continue
    return -1


def own_counter_files() -> list[tuple[Path, str]]:
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        text = ""
    return counter_files(text)


class OomWatch:
    """Samples the counter; `struck(now)` tells whether it moved within the last WINDOW_S."""

    def __init__(self, candidates: list[tuple[Path, str]] | None = None,
                 window_s: float = WINDOW_S) -> None:
        self.candidates = own_counter_files() if candidates is None else candidates
        self.window_s = window_s
        self.samples: collections.deque[tuple[float, int]] = collections.deque()

    def sample(self, now: float) -> None:
        self.samples.append((now, read_counter(self.candidates)))
        while len(self.samples) > 1 and self.samples[1][0] <= now - self.window_s:
            self.samples.popleft()

    def struck(self, now: float) -> bool:
        """True when the kernel OOM-killed something in our cgroup since the oldest sample
        kept (at most WINDOW_S ago, or since start-up)."""
        current = read_counter(self.candidates)
        if current < 0 or not self.samples:
            return False
        before = self.samples[0][1]
        return before >= 0 and current > before
