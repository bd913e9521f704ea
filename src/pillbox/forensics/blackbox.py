"""In-child flight recorder.

Responsibilities:
1. faulthandler writes fatal-signal tracebacks of every thread into a per-process file the
   supervisor reads after a death; SIGUSR1 dumps the same on demand (before a timeout or
   memory kill), so even a hung or dying process leaves its stacks behind. A thread running
   an async handler shows only its event loop waiting, so SIGUSR2 (sent with SIGUSR1) adds
   the await chain of each async handler in flight (`dump_awaits`);
2. remember which delivery each thread is working on, and carry it into threads that handler
   code starts, so errors raised there are recorded with the delivery in context;
3. route uncaught thread exceptions and unraisable exceptions to a recorder callback.
"""

from __future__ import annotations

import asyncio
import faulthandler
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

Context = dict[str, Any]
Recorder = Callable[[str, str, Context | None], None]

_local = threading.local()
_fault_file: TextIO | None = None
_awaits_file: Path | None = None
#: thread ident -> the asyncio task of the async handler that thread is running
_tasks: dict[int, asyncio.Task[Any]] = {}
#: An await chain is followed this deep at most.
AWAIT_DEPTH_MAX = 64


def fault_path(run_dir: str, pid: int) -> Path:
    return Path(run_dir) / f"fault-{pid}.log"


def awaits_path(run_dir: str, pid: int) -> Path:
    """A file of its own: faulthandler writes its SIGUSR1 dump from C at the same moment,
    and the two once interleaved in one file."""
    return Path(run_dir) / f"awaits-{pid}.log"


def install(run_dir: str, pid: int, recorder: Recorder) -> Path:
    """Arm faulthandler and the exception hooks for this process."""
    global _fault_file, _awaits_file
    path = fault_path(run_dir, pid)
    _awaits_file = awaits_path(run_dir, pid)
    _fault_file = open(path, "w")  # noqa: SIM115 - must stay open for the process lifetime
    faulthandler.enable(file=_fault_file, all_threads=True)
    faulthandler.register(signal.SIGUSR1, file=_fault_file, all_threads=True, chain=False)
    signal.signal(signal.SIGUSR2, lambda *_: dump_awaits())
    _patch_thread_start()
    threading.excepthook = lambda args: _thread_hook(args, recorder)
    sys.unraisablehook = lambda args: _unraisable_hook(args, recorder)
    return path


def set_context(context: Context | None) -> None:
    """Declare what the current thread is working on (None when idle)."""
    _local.context = context


def set_task(task: asyncio.Task[Any] | None) -> None:
    """Declare the async handler's task the current thread runs (None when done)."""
    if task is None:
        _tasks.pop(threading.get_ident(), None)
    else:
        _tasks[threading.get_ident()] = task


def dump_awaits() -> None:
    """Write where each async handler in flight is awaiting, innermost first, as
    `Awaiting in thread 0x... (most recent call first):` blocks. A coroutine that is
    running (blocking its loop in sync code) is skipped: its thread's stack shows where."""
    if _awaits_file is None:
        return
    blocks = []
    for ident, task in list(_tasks.items()):
        coro = task.get_coro()
        frames = [] if getattr(coro, "cr_running", False) else await_chain(coro)
        if frames:
            blocks.append(f"Awaiting in thread {ident:#018x} (most recent call first):\n"
                          + "\n".join(frames) + "\n")
    if blocks:
        _awaits_file.write_text("\n".join(blocks))


def await_chain(awaitable: Any) -> list[str]:
    """`  File "...", line N in func` lines of a suspended coroutine's await chain, the
    innermost (where it waits) first: faulthandler's format."""
    lines = []
    current = awaitable
    for _ in range(AWAIT_DEPTH_MAX):
        frame = (getattr(current, "cr_frame", None) or getattr(current, "gi_frame", None)
                 or getattr(current, "ag_frame", None))
        if frame is None:
            break
        code = frame.f_code
        lines.append(f'  File "{code.co_filename}", line {frame.f_lineno} in {code.co_name}')
        current = (getattr(current, "cr_await", None) or getattr(current, "gi_yieldfrom", None)
                   or getattr(current, "ag_await", None))
    return lines[::-1]


def current_context() -> Context | None:
    context: Context | None = getattr(_local, "context", None)
    if context is None:
        context = getattr(threading.current_thread(), "_pillbox_context", None)
    return context


def _patch_thread_start() -> None:
    original = threading.Thread.start
    if getattr(original, "_pillbox", False):
        return

    def start(self: threading.Thread) -> None:
        self._pillbox_context = current_context()  # type: ignore[attr-defined]
        original(self)

    start._pillbox = True  # type: ignore[attr-defined]
    threading.Thread.start = start  # type: ignore[method-assign]


def _thread_hook(args: threading.ExceptHookArgs, recorder: Recorder) -> None:
    if args.exc_type is SystemExit:
        return
    text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
    name = args.thread.name if args.thread is not None else "?"
    context = getattr(args.thread, "_pillbox_context", None)
    recorder("thread_error", f"exception in thread {name!r}:\n{text}", context)


def _unraisable_hook(args: Any, recorder: Recorder) -> None:
    exc = args.exc_value
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if exc else ""
    recorder("unraisable", f"{args.err_msg or 'unraisable exception'}: {args.object!r}\n{text}",
             current_context())
