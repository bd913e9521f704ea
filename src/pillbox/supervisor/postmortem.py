"""After a child dies: read its fault file, decide who pays, store the crash record."""

from __future__ import annotations

import logging
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pillbox
from pillbox import defaults
from pillbox.broker import SQLBroker
from pillbox.forensics import blackbox, faultlog
from pillbox.forensics.classify import ExitStatus, classify
from pillbox.messages import CrashRecord
from pillbox.supervisor.attribution import Started, attribute, thread_number
from pillbox.supervisor.child import ChildProcess

log = logging.getLogger("pillbox.supervisor")

#: Frames in these files are not the application's: the standard library and pillbox.
LIBRARY_PATHS = (sysconfig.get_paths()["stdlib"], str(Path(pillbox.__file__).parent))


def build_record(child: ChildProcess, status: int, rusage_peak: int, now: float,
                 oom_struck: bool) -> CrashRecord:
    """`oom_struck`: the kernel OOM-killed something in our cgroup just before this death."""
    exit_status = ExitStatus.from_wait(status)
    cause = classify(exit_status, child.killed_for, oom_struck)
    focus = _focus_thread(child)
    traceback = read_fault(child.run_dir, child.pid, focus)
    top = faultlog.top_frame(traceback, LIBRARY_PATHS)
    crashed_in = _first_thread(traceback)
    started = sorted(child.started.values(),  # the delivery of the thread that crashed first
                     key=lambda s: thread_number(s.thread) != crashed_in)
    in_flight: list[dict[str, Any]] = [
        {"delivery_id": s.delivery_id, "subscription": s.subscription, "message_id": s.message_id,
         "running_s": round(now - s.started_at, 3)} for s in started
    ] + [{"request": f"{r['method']} {r['path']}", "running_s": round(now - r["started_at"], 3)}
         for r in child.requests.values()]
    what = _what(in_flight)
    how = exit_status.describe(child.killed_for, oom_struck)
    summary = f"{cause} ({how}) in {child.spec.name} pid {child.pid}{what}"
    if top:
        summary += f" at {top}"
    return CrashRecord(at=now, work_type=child.spec.work_type, pid=child.pid,
                       exit_code=exit_status.exit_code, signal=exit_status.signal, cause=cause,
                       in_flight=in_flight, traceback=traceback,
                       peak_rss_bytes=max(child.peak_rss, rusage_peak),
                       log_tail="\n".join(child.log_tail), summary=summary)


_THREAD_LINE = re.compile(r"^(?:Current thread|Thread) (0x[0-9a-fA-F]+)", re.MULTILINE)


def _first_thread(traceback: str) -> int | None:
    """The thread whose stack the arranged traceback shows first (the crashing one)."""
    found = _THREAD_LINE.search(traceback)
    return int(found.group(1), 16) if found else None


def _focus_thread(child: ChildProcess) -> str | None:
    """The thread whose stack goes first: the blamed delivery's, else the longest-running
    delivery's when the supervisor killed the process (its own dump comes from the main
    thread), else faulthandler's "current" (crashing) thread."""
    if child.blamed is not None and child.blamed in child.started:
        return child.started[child.blamed].thread
    if child.killed_for is not None and child.started:
        return min(child.started.values(), key=lambda s: s.started_at).thread
    return None


def _what(in_flight: list[dict[str, Any]]) -> str:
    if not in_flight:
        return ", nothing in flight"
    first = in_flight[0]
    if "request" in first:
        label = f"request {first['request']}"
    else:
        label = f"{first['subscription']} delivery {first['delivery_id']}"
    more = f" (+{len(in_flight) - 1} more)" if len(in_flight) > 1 else ""
    return f" while handling {label}{more}"


def read_fault(run_dir: str, pid: int, focus_thread: str | None) -> str:
    text = _take(blackbox.fault_path(run_dir, pid))
    if not text:
        return ""
    awaits = _take(blackbox.awaits_path(run_dir, pid))
    return faultlog.arrange(faultlog.last_dump(text) + "\n\n" + awaits, focus_thread,
                            defaults.OTHER_THREADS_MAX_LINES)


def _take(path: Path) -> str:
    """A file's text ('' when there is none), removing it."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
    finally:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Remains:
    """What a dead child held, copied out of the ChildProcess (which its restart reuses), so
    that a crash record the database refused can be stored later with the same verdicts."""

    owner: str
    started: tuple[Started, ...]
    blamed: int | None
    finished: dict[int, str]

    @classmethod
    def of(cls, child: ChildProcess) -> Remains:
        return cls(owner=child.owner, started=tuple(child.started.values()),
                   blamed=child.blamed, finished=dict(child.finished))


def store(broker: SQLBroker, remains: Remains, record: CrashRecord) -> int:
    """Save the record and charge, suspect, release or ack what the child held."""
    owner_leases = broker.leases_of(remains.owner)
    roles = attribute(list(remains.started), owner_leases, remains.blamed, remains.finished,
                      faultlog.current_thread(record.traceback))
    return broker.record_crash(record, roles)
