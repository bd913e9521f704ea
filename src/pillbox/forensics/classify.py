"""Pure decoding of how a child ended: exit status → cause and a human hint."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

FATAL_SIGNALS = {signal.SIGSEGV: "segfault", signal.SIGBUS: "segfault", signal.SIGILL: "segfault",
                 signal.SIGFPE: "segfault", signal.SIGABRT: "abort"}


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int | None
    signal: int | None

    @classmethod
    def from_wait(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls(exit_code=None, signal=os.WTERMSIG(status))
        return cls(exit_code=os.WEXITSTATUS(status), signal=None)

    def describe(self, killed_for: str | None = None, oom_struck: bool = False) -> str:
        """"killed by SIGKILL (the kernel's OOM killer)", "exited with code 3"; a SIGKILL
        nobody here sent, with no OOM kill counted, was sent from outside."""
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            hint = ""
            if self.signal == signal.SIGKILL and killed_for is None:
                hint = (" (the kernel's OOM killer)" if oom_struck
                        else " (from outside pillbox: an operator, or an OOM killer it cannot see)")
            return f"killed by {name}{hint}"
        return f"exited with code {self.exit_code}"


def classify(status: ExitStatus, killed_for: str | None, oom_killed: bool) -> str:
    """The crash cause: timeout | memory | stalled (we killed it), segfault | abort | killed
    (a signal), or exit (it exited by itself)."""
    if killed_for is not None:
        return killed_for
    if status.signal is not None:
        if status.signal in FATAL_SIGNALS:
            return FATAL_SIGNALS[signal.Signals(status.signal)]
        if status.signal == signal.SIGKILL:
            return "memory" if oom_killed else "killed"
        return "killed"
    return "exit"
