"""Every default pillbox uses, in one place, with its unit in the name."""

from __future__ import annotations

DATABASE_URL = "sqlite:///pillbox.db"
"""Where messages live when the app names no database: a file in the working directory."""

MAX_PAYLOAD_BYTES = 1024 * 1024
"""Largest encoded JSON payload accepted by publish (1 MiB)."""

MAX_ATTEMPTS = 5
"""Handler runs (exceptions) before a delivery is dead with reason "max attempts"."""

MAX_CRASHES = 3
"""Process deaths attributed to one delivery before it is quarantined as a poison pill."""

MIN_BACKOFF_S = 1.0
"""First retry delay after a handler exception; doubles per attempt, with jitter."""

MAX_BACKOFF_S = 300.0
"""Cap of the retry delay."""

TIMEOUT_S = 60.0
"""Longest a handler may run before the supervisor ends its process (cause "timeout")."""

CONCURRENCY = 4
"""Deliveries of one subscription run at once in each worker process."""

MAX_CONCURRENCY = 256
"""Most handler threads one subscription may ask for in one worker process."""

MIN_MEMORY_LIMIT_BYTES = 32 * 2**20
"""A memory_limit below this is refused: a Python worker alone uses more."""

LEASE_S = 30.0
"""Ack deadline of a pulled delivery; extended every LEASE_S / 3 while the handler runs."""

PREFETCH_WINDOW_S = 0.05
"""A worker leases ahead only as many deliveries as its recent handlers finish in this long
(none while handlers are slow), so a delivery never waits long behind its own worker."""

PREFETCH_MAX = 32
"""Most deliveries of one subscription a worker leases ahead of its idle slots."""

STRANDED_AFTER_S = 0.25
"""Leased-ahead deliveries still waiting when every slot has been busy this long (a handler
turned out slow) are given back at once, without an attempt penalty, for other workers."""

ACK_DELAY_MAX_S = 0.05
"""Finished deliveries are acked with the next pull, or on their own after this long."""

TIMINGS_FLUSH_S = 5.0
"""How often a worker adds its handler durations to the database (for the metrics)."""

POLL_INTERVAL_S = 0.05
"""Shortest wait of an idle consumer between looks for work (it backs off when idle)."""

IDLE_POLL_MAX_S = 0.5
"""Idle consumers back off their polling up to this interval."""

HEARTBEAT_INTERVAL_S = 0.5
"""How often children tell the supervisor they are alive."""

STALL_TIMEOUT_S = 30.0
"""A child silent (no heartbeat) this long is killed and restarted."""

KILL_GRACE_S = 3.0
"""Between SIGTERM and SIGKILL when the supervisor ends a child."""

DUMP_WAIT_S = 0.15
"""Time a child killed at once gets to write its stack dumps before SIGKILL."""

TIMEOUT_DUMP_WAIT_S = 0.5
"""The same for a timed-out handler: a hung process costs nothing for that while a worker
writes where its async handlers await (Python code, run once its main thread gets the
signal), whereas a memory hog must stop quickly."""

SHUTDOWN_GRACE_S = 30.0
"""On SIGTERM/SIGINT, in-flight handlers get this long to finish."""

RESTART_BACKOFF_FIRST_S = 0.5
"""Delay before the second consecutive restart of a child (the first one is immediate)."""

RESTART_BACKOFF_MAX_S = 10.0
"""Cap of the restart delay: seconds, never minutes."""

RESTART_HEALTHY_S = 10.0
"""A child that ran this long without dying has its restart backoff reset."""

CRASH_LOOP_CRASHES = 5
"""This many crashes of one work type within CRASH_LOOP_WINDOW_S raise the crash-loop alarm."""

CRASH_LOOP_WINDOW_S = 60.0

LOG_LINES_PER_S = 50
"""Per child, log lines forwarded per second; the rest are counted as suppressed."""

LOG_TAIL_LINES = 40
"""Last log lines of a child kept in its crash record."""

OTHER_THREADS_MAX_LINES = 60
"""Traceback lines of non-crashing threads kept in a crash record."""

WEB_BIND = "127.0.0.1:8000"
"""Listening address when neither --bind nor $PORT is given."""

WEB_WORKERS = 2
"""Web processes sharing the listening socket: with two, one is always accepting."""
