"""Turns faulthandler output into a crash record's traceback: the crashing (or named) thread
first, the other threads capped. Pure text processing."""

from __future__ import annotations

import re

_HEADER = re.compile(r"^(Current thread|Thread) (0x[0-9a-f]+)", re.IGNORECASE)


def split_threads(text: str) -> tuple[list[str], list[tuple[str, bool, list[str]]]]:
    """(preamble lines, [(thread id, is current, lines)]) of one faulthandler dump."""
    preamble: list[str] = []
    threads: list[tuple[str, bool, list[str]]] = []
    for line in text.splitlines():
        match = _HEADER.match(line)
        if match:
            threads.append((match.group(2).lower(), match.group(1).startswith("Current"), [line]))
        elif threads:
            if line.strip():
                threads[-1][2].append(line)
        elif line.strip():
            preamble.append(line)
    return preamble, threads


def current_thread(text: str) -> str | None:
    """The thread faulthandler marks as current: the one that crashed, in a fatal dump."""
    for tid, current, _lines in split_threads(text)[1]:
        if current:
            return tid
    return None


def last_dump(text: str) -> str:
    """Only the newest dump when several were appended (SIGUSR1 then a fatal signal)."""
    starts = [m.start() for m in re.finditer(r"^Fatal Python error", text, re.MULTILINE)]
    return text[starts[-1]:] if starts else text


_AWAITING = re.compile(r"^Awaiting in thread (0x[0-9a-f]+)", re.IGNORECASE)


def split_awaits(text: str) -> tuple[str, dict[int, list[str]]]:
    """(the text without them, thread id -> lines) of the `Awaiting in thread 0x...` blocks
    a worker appends after a stack dump: where its async handlers wait."""
    rest: list[str] = []
    awaits: dict[int, list[str]] = {}
    block: list[str] | None = None
    for line in text.splitlines():
        match = _AWAITING.match(line)
        if match:
            block = awaits.setdefault(int(match.group(1), 16), [])
            block.append(line)
        elif block is not None and line.strip():
            block.append(line)
        else:
            block = None
            rest.append(line)
    return "\n".join(rest), awaits


def arrange(text: str, focus_thread: str | None, other_lines_max: int) -> str:
    """Crashing thread (or `focus_thread`, e.g. the one running a timed-out delivery) first,
    then the preamble, then the other threads up to `other_lines_max` lines. A thread that
    was running an async handler has where that handler awaits shown above its own stack
    (which only shows the event loop waiting)."""
    text, awaits = split_awaits(last_dump(text))
    preamble, threads = split_threads(text)
    if not threads:
        return text.strip()
    focus = _pick(threads, focus_thread)
    first = threads[focus]
    out = [*_with_awaits(first, awaits), "", *preamble]
    budget = other_lines_max
    skipped = 0
    for index, thread in enumerate(threads):
        if index == focus:
            continue
        if budget <= 0:
            skipped += 1
            continue
        lines = _with_awaits(thread, awaits)
        out.append("")
        out.extend(lines[:budget])
        budget -= len(lines)
    if skipped:
        out.append(f"... {skipped} more thread(s) not shown")
    return "\n".join(out).strip()


def _with_awaits(thread: tuple[str, bool, list[str]], awaits: dict[int, list[str]]
                 ) -> list[str]:
    tid, _current, lines = thread
    awaiting = awaits.get(int(tid, 16))
    return [*awaiting, "", *lines] if awaiting else lines


def _pick(threads: list[tuple[str, bool, list[str]]], focus_thread: str | None) -> int:
    if focus_thread is not None:
        for index, (tid, _current, _lines) in enumerate(threads):
            if int(tid, 16) == int(focus_thread, 16):
                return index
    for index, (_tid, current, _lines) in enumerate(threads):
        if current:
            return index
    return 0


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


def top_frame(traceback_text: str, skip: tuple[str, ...] = ()) -> str:
    """The most recent frame of the first thread in `file:line in function` form, skipping
    frames in files under `skip` (the standard library, pillbox itself) when any other is
    there, so it points at the application's code."""
    frames: list[re.Match[str]] = []
    for line in traceback_text.splitlines():
        if frames and _HEADER.match(line):
            break
        match = _FRAME.match(line)
        if match:
            frames.append(match)
    if not frames:
        return ""
    chosen = next((m for m in frames if not m["file"].startswith(skip)), frames[0])
    return f"{chosen['file']}:{chosen['line']} in {chosen['func']}"
