"""Pure decisions of the runtime: restart backoff, crash-loop alarm, attribution, exit
classification, faulthandler arrangement, retry backoff, payload errors, log rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal

import pytest

from pillbox.broker.base import CULPRIT, PRIME, RELEASED, SUSPECT
from pillbox.errors import PayloadNotJSON, PayloadTooLarge
from pillbox.forensics import blackbox
from pillbox.forensics.classify import ExitStatus, classify
from pillbox.forensics.faultlog import arrange, top_frame
from pillbox.logs import Log
from pillbox.payload import encode
from pillbox.retry import backoff_s, decide
from pillbox.supervisor.attribution import Started, attribute
from pillbox.supervisor.policy import CrashLoopDetector, RestartTracker


def test_restart_is_immediate_then_backs_off_to_a_cap_and_resets_when_healthy():
    tracker = RestartTracker(first_s=0.5, max_s=10.0, healthy_s=10.0)
    delays = [tracker.on_exit(started_at=100.0, now=100.5) for _ in range(8)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert tracker.on_exit(started_at=100.0, now=111.0) == 0.0  # up 11 s: healthy


def test_crashes_blamed_on_messages_restart_at_once_and_do_not_count():
    tracker = RestartTracker(first_s=0.5, max_s=10.0, healthy_s=10.0)
    assert tracker.on_exit(100.0, 100.5) == 0.0
    assert [tracker.on_exit(100.0, 100.5, blamed_on_messages=True) for _ in range(5)] == [0.0] * 5
    assert tracker.on_exit(100.0, 100.5) == 0.5  # the second crash nobody can be blamed for


def test_crash_loop_alarm_fires_once_per_window():
    detector = CrashLoopDetector(threshold=3, window_s=60)
    assert [detector.on_crash(t) for t in (0, 1, 2, 3)] == [False, False, True, False]
    assert detector.on_crash(200) is False  # window cleared: re-armed
    assert [detector.on_crash(t) for t in (201, 202)] == [False, True]


def started(delivery_id: int) -> Started:
    return Started(delivery_id=delivery_id, token=f"t{delivery_id}", subscription="s",
                   message_id=f"m{delivery_id}", thread=None, started_at=0, timeout_s=1,
                   memory_limit_bytes=None)


def test_attribution_alone_several_blamed_and_unstarted():
    assert attribute([started(1)], [(1, "t1"), (2, "t2")], None) == [
        (1, "t1", CULPRIT), (2, "t2", RELEASED)]
    assert attribute([started(1), started(2)], [], None) == [
        (1, "t1", SUSPECT), (2, "t2", SUSPECT)]
    assert attribute([started(1), started(2)], [], 2) == [
        (1, "t1", RELEASED), (2, "t2", CULPRIT)]
    assert attribute([], [(3, "t3")], None) == [(3, "t3", RELEASED)]


def test_the_delivery_whose_thread_crashed_a_shared_process_is_the_prime_suspect():
    a, b = (Started(delivery_id=i, token=f"t{i}", subscription="s", message_id=f"m{i}",
                    thread=thread, started_at=0, timeout_s=1, memory_limit_bytes=None)
            for i, thread in ((1, "0x7f00000000a1"), (2, "0x7f00000000b2")))
    assert attribute([a, b], [], None, crashed_thread="0x7f00000000B2") == [
        (1, "t1", SUSPECT), (2, "t2", PRIME)]
    # a thread running no handler (the main thread of a dump the supervisor asked for)
    assert attribute([a, b], [], None, crashed_thread="0x7f0000000001") == [
        (1, "t1", SUSPECT), (2, "t2", SUSPECT)]
    # alone, or singled out by the supervisor: as before
    assert attribute([a], [], None, crashed_thread="0x7f00000000a1") == [(1, "t1", CULPRIT)]
    assert attribute([a, b], [], 1, crashed_thread="0x7f00000000b2") == [
        (1, "t1", CULPRIT), (2, "t2", RELEASED)]


@pytest.mark.parametrize(
    ("status", "killed_for", "oom", "cause"),
    [
        (ExitStatus(None, signal.SIGSEGV), None, False, "segfault"),
        (ExitStatus(None, signal.SIGBUS), None, False, "segfault"),
        (ExitStatus(None, signal.SIGABRT), None, False, "abort"),
        (ExitStatus(None, signal.SIGKILL), None, False, "killed"),
        (ExitStatus(None, signal.SIGKILL), None, True, "memory"),
        (ExitStatus(3, None), None, False, "exit"),
        (ExitStatus(None, signal.SIGKILL), "timeout", False, "timeout"),
    ],
)
def test_exit_classification(status, killed_for, oom, cause):
    assert classify(status, killed_for, oom) == cause


def test_exit_status_decodes_wait_status_and_hints():
    assert ExitStatus.from_wait(3 << 8) == ExitStatus(3, None)
    assert ExitStatus.from_wait(signal.SIGSEGV) == ExitStatus(None, signal.SIGSEGV)
    killed = ExitStatus(None, signal.SIGKILL)
    assert "from outside pillbox" in killed.describe()
    assert killed.describe(oom_struck=True) == "killed by SIGKILL (the kernel's OOM killer)"
    assert killed.describe("timeout") == "killed by SIGKILL"


DUMP = """Fatal Python error: Segmentation fault

Thread 0x00000000000000aa (most recent call first):
  File "/lib/threading.py", line 331 in wait
  File "/lib/threading.py", line 629 in wait

Current thread 0x00000000000000bb (most recent call first):
  File "/lib/ctypes/__init__.py", line 519 in string_at
  File "/app/handlers.py", line 12 in welcome
  File "/lib/threading.py", line 982 in run
"""


def test_crashing_thread_first_and_top_frame_points_at_app_code():
    text = arrange(DUMP, None, other_lines_max=60)
    assert text.startswith("Current thread 0x00000000000000bb")
    assert text.index("Fatal Python error") < text.index("Thread 0x00000000000000aa")
    assert top_frame(text, ("/lib",)) == "/app/handlers.py:12 in welcome"
    focused = arrange(DUMP, "0xaa", other_lines_max=1)
    assert focused.startswith("Thread 0x00000000000000aa")
    assert "string_at" not in focused  # the other thread was capped at one line


TIMEOUT_DUMP = """Thread 0x00000000000000cc (most recent call first):
  File "/lib/selectors.py", line 468 in select
  File "/lib/asyncio/base_events.py", line 1884 in _run_once

Current thread 0x00000000000000dd (most recent call first):
  File "/lib/threading.py", line 331 in wait

Awaiting in thread 0x00000000000000cc (most recent call first):
  File "/lib/asyncio/tasks.py", line 649 in sleep
  File "/app/jobs.py", line 7 in wait_for_reply
  File "/app/jobs.py", line 20 in handle
"""


def test_where_a_timed_out_async_handler_awaits_goes_above_its_thread():
    text = arrange(TIMEOUT_DUMP, "0xcc", other_lines_max=60)
    assert text.startswith("Awaiting in thread 0x00000000000000cc")
    assert text.index("in handle") < text.index("Thread 0x00000000000000cc") \
        < text.index("Current thread 0x00000000000000dd")
    assert text.count("Awaiting in thread") == 1
    assert top_frame(text, ("/lib",)) == "/app/jobs.py:7 in wait_for_reply"


def test_the_await_chain_of_a_suspended_coroutine_is_innermost_first():
    async def inner():
        await asyncio.sleep(10)

    async def outer():
        await inner()

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(outer())
        loop.run_until_complete(asyncio.sleep(0.01))  # the task is now suspended in sleep
        lines = blackbox.await_chain(task.get_coro())
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
    finally:
        loop.close()
    assert [line.rsplit(" in ", 1)[1] for line in lines] == ["sleep", "inner", "outer"]
    assert all(line.startswith('  File "') for line in lines)


def test_retry_backoff_grows_is_capped_and_dies_at_max_attempts():
    assert [backoff_s(a, 1.0, 10.0, jitter=1.0) for a in (1, 2, 3, 4, 5)] == [1, 2, 4, 8, 10]
    assert backoff_s(3, 1.0, 10.0, jitter=0.0) == 2.0
    assert decide(5, 5, 1.0, 10.0, now=100.0).retry_at is None
    assert 100.5 <= decide(1, 5, 1.0, 10.0, now=100.0).retry_at <= 101.0


def test_payload_errors_name_the_value_and_sizes():
    with pytest.raises(PayloadNotJSON, match=r"set at \$\.user\.tags\[1\]"):
        encode({"user": {"tags": ["a", {1, 2}]}}, 1000)
    with pytest.raises(PayloadNotJSON, match=r"float at \$\.x"):
        encode({"x": float("nan")}, 1000)
    with pytest.raises(PayloadTooLarge, match=r"payload is 2008 bytes, over the limit of 1000"):
        encode({"x": "y" * 2000}, 1000)
    assert json.loads(encode({"a": [1, "é"]}, 1000)) == {"a": [1, "é"]}


def test_child_output_is_rate_limited_with_a_count_of_what_was_suppressed():
    out = io.StringIO()
    log = Log(out, json_mode=True, lines_per_s=5)
    for i in range(20):
        log.child_line("worker.1:42", f"line {i}", now=1000.0 + i * 0.01)
    log.child_line("worker.1:42", "later", now=1002.0)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    forwarded = [line["line"] for line in lines if "line" in line]
    assert forwarded == ["line 0", "line 1", "line 2", "line 3", "line 4", "later"]
    (suppressed,) = [line for line in lines if line.get("event") == "log.suppressed"]
    assert suppressed["suppressed"] == 15


def test_a_crash_record_names_the_crashing_threads_delivery_first(tmp_path):
    """It named whichever delivery started first, not the one whose thread crashed."""
    from pillbox.forensics import blackbox
    from pillbox.supervisor.attribution import Started
    from pillbox.supervisor.child import ChildProcess, ChildSpec
    from pillbox.supervisor.postmortem import build_record

    child = ChildProcess(ChildSpec("worker.1", "worker"), "app:app", str(tmp_path))
    child.pid = 4242
    for delivery_id, thread in ((7, "0xaa"), (8, "0xbb")):  # 0xbb is the crashing thread
        child.started[delivery_id] = Started(
            delivery_id=delivery_id, token="t", subscription="jobs", message_id=f"m{delivery_id}",
            thread=thread, started_at=100.0 + delivery_id, timeout_s=30.0,
            memory_limit_bytes=None)
    blackbox.fault_path(str(tmp_path), 4242).write_text(DUMP)
    record = build_record(child, signal.SIGSEGV, 0, 120.0, oom_struck=False)
    assert [item["delivery_id"] for item in record.in_flight] == [8, 7]
    assert "while handling jobs delivery 8 (+1 more)" in record.summary
