"""The supervisor loop.

Responsibilities, each tick:
1. read children's event pipes (ready, heartbeats, deliveries and requests in flight) and
   output (kept as a tail, forwarded under a rate limit);
2. reap dead children: post-mortem (crash record, attribution), then restart per policy;
3. watch the living: per-delivery timeouts, memory limits, missing heartbeats;
4. act on signals (SIGTERM/SIGINT: drain and stop; SIGCHLD only wakes the loop).

Signal handlers only write to a wake-up pipe; everything happens here, in one thread.
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

from pillbox import defaults
from pillbox.broker import SQLBroker, open_broker
from pillbox.forensics import sentry
from pillbox.forensics.classify import ExitStatus
from pillbox.forensics.faultlog import top_frame
from pillbox.logs import Log
from pillbox.messages import CrashRecord
from pillbox.supervisor import postmortem
from pillbox.supervisor.attribution import attribute
from pillbox.supervisor.child import ChildProcess, ChildSpec
from pillbox.supervisor.oom import OomWatch
from pillbox.supervisor.policy import CrashLoopDetector, RestartTracker

EX_OK = 0
STANDBY = "worker.standby"
PROMOTABLE = ("worker", "lane")
SAMPLE_RSS_EVERY_S = 0.2
BOOT_TIMEOUT_S = 120.0
RESCUE_EVERY_S = 5.0
#: Crash records the database refused, kept in memory for another try.
UNSTORED_KEPT = 1000
#: After a child's death, what it still holds is released this much later (seconds).
SWEEPS_S = (0.0, 1.0, 5.0)


@dataclass
class Options:
    app_path: str
    database: str
    run_dir: str
    workers: int = 2
    web_workers: int = defaults.WEB_WORKERS
    lane: bool = True
    standby: bool = True
    web_socket: socket.socket | None = None
    crons: bool = False
    memory_limit_bytes: int | None = None
    shutdown_grace_s: float = defaults.SHUTDOWN_GRACE_S
    stall_timeout_s: float = defaults.STALL_TIMEOUT_S


def _stopped_by_us(status: int) -> bool:
    """A clean exit, or the SIGTERM/SIGKILL of a stop (anything else is a crash)."""
    exit_status = ExitStatus.from_wait(status)
    return exit_status.exit_code == 0 or exit_status.signal in (signal.SIGTERM, signal.SIGKILL)


class Supervisor:
    def __init__(self, options: Options, log: Log) -> None:
        self.options = options
        self.log = log
        self.children = [ChildProcess(spec, options.app_path, options.run_dir)
                         for spec in self._specs()]
        self.trackers = {c.spec.name: RestartTracker() for c in self.children}
        self.loops = {wt: CrashLoopDetector() for wt in ("worker", "web", "cron")}
        self.broker: SQLBroker | None = None
        self.stopping = False
        self.stop_deadline = 0.0
        self.selector = selectors.DefaultSelector()
        self._last_rss = self._last_rescue = 0.0
        self._wake_r, self._wake_w = os.pipe()
        self.unstored: collections.deque[tuple[CrashRecord, postmortem.Remains, str]] = \
            collections.deque(maxlen=UNSTORED_KEPT)
        self._file_problem: str | None = None
        #: (when, owner, finished) of dead children whose leases are looked at again
        self.sweeps: list[tuple[float, str, dict[int, str]]] = []
        self.oom = OomWatch()
        self.oom.sample(time.time())

    def _specs(self) -> list[ChildSpec]:
        o = self.options
        specs = [ChildSpec(f"worker.{i + 1}", "worker") for i in range(o.workers)]
        if o.lane and o.workers:
            specs.append(ChildSpec("worker.lane", "lane"))
        if o.standby and o.workers:
            specs.append(ChildSpec(STANDBY, "standby"))
        if o.web_socket is not None:
            fd = o.web_socket.fileno()
            specs += [ChildSpec(f"web.{i + 1}", "web", pass_fds=(fd,),
                                env={"PILLBOX_SOCKET_FD": str(fd)})
                      for i in range(o.web_workers)]
        if o.crons:
            specs.append(ChildSpec("cron.1", "cron"))
        for spec in specs:
            spec.env["PILLBOX_SHUTDOWN_GRACE"] = str(o.shutdown_grace_s)
            spec.env["PILLBOX_STALL_TIMEOUT"] = str(o.stall_timeout_s)
        return specs

    # -- main loop -----------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        self.broker = open_broker(self.options.database, pool_size=2, migrate=False)
        now = time.time()
        for child in self.children:
            self._spawn(child, now)
        self.log.event("supervisor.started", f"pillbox supervisor pid {os.getpid()}: "
                       + ", ".join(c.spec.name for c in self.children), pid=os.getpid())
        while True:
            self._wait(0.05)
            now = time.time()
            self._read(now)
            self._reap(now)
            self._sweep_late_leases(now)
            if self.stopping:
                if not any(c.alive for c in self.children):
                    break
                if now > self.stop_deadline:
                    for child in self.children:
                        child.signal_group(signal.SIGKILL)
            else:
                self._watch(now)
                self._restart_due(now)
            for child in self.children:
                child.escalate(now)
        self._sweep_late_leases(float("inf"))
        self._store_unstored()
        for record, _, _ in self.unstored:
            self.log.event("crash.lost", f"never stored: {record.summary}", level="critical")
        self.log.event("supervisor.stopped", "all children stopped; bye")
        self.broker.close()
        return EX_OK

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = time.time() + self.options.shutdown_grace_s + 5.0
            # handlers only flag; children are told from the loop below via _stop_children
            self._stop_children()

    def _stop_children(self) -> None:
        for child in self.children:
            child.restart_at = None
            child.signal(signal.SIGTERM)

    def _wait(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            if key.data is None:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass

    # -- children ------------------------------------------------------------------------
    def _spawn(self, child: ChildProcess, now: float) -> None:
        child.spawn(now)
        self.selector.register(child.events_fd, selectors.EVENT_READ, child)
        self.selector.register(child.output_fd, selectors.EVENT_READ, child)

    def _read(self, now: float) -> None:
        for child in self.children:
            if child.alive:
                self._drain(child, now)

    def _drain(self, child: ChildProcess, now: float) -> None:
        child.read_events(now)
        for line in child.read_output():
            self.log.child_line(f"{child.spec.name}:{child.pid}", line, now)

    def _reap(self, now: float) -> None:
        for child in self.children:
            if not child.alive:
                continue
            reaped = child.reap()
            if reaped is None:
                continue
            status, rusage_peak = reaped
            self._drain(child, now)
            self._forget(child)
            child.signal_group(signal.SIGKILL)  # anything the child started dies with it
            if self.stopping and child.killed_for is None and _stopped_by_us(status):
                self.log.event("child.stopped", f"{child.spec.name} pid {child.pid} stopped",
                               child=child.spec.name)
            else:  # a crash, even while stopping (a poison message in the lane...)
                self._postmortem(child, status, rusage_peak, now)
            for delay in SWEEPS_S:  # after the drain: `finished` has its last done events
                self.sweeps.append((now + delay, child.owner, dict(child.finished)))
            child.close_pipes()
            if not self.stopping:
                self._schedule_restart(child, now)

    def _sweep_late_leases(self, now: float) -> None:
        """A dead owner can hold nothing: release what it still holds, or ack what it had
        finished, instead of waiting for lease expiry. At once for a child that stopped (work
        it leased while told to stop, a handler cut off at the deadline, acks not written);
        and again later for every death, because a statement a child sent just before it
        died can commit after its post-mortem read what it held (PostgreSQL finishes an
        autocommit pull whose client is gone)."""
        due = [sweep for sweep in self.sweeps if sweep[0] <= now]
        if not due:
            return
        self.sweeps = [sweep for sweep in self.sweeps if sweep[0] > now]
        assert self.broker is not None
        for _, owner, finished in due:
            try:
                held = self.broker.leases_of(owner)
                if held:
                    self.broker.settle(attribute([], held, None, finished), now)
                    self.log.event("leases.swept", f"released {len(held)} delivery(ies) still "
                                   f"held by {owner} after it ended", owner=owner,
                                   count=len(held))
            except Exception as exc:  # they return at lease expiry anyway
                self.log.event("leases.unswept", f"{owner}: {exc}", level="warning")

    def _check_database_file(self) -> None:
        assert self.broker is not None
        problem = self.broker.file_problem()
        if problem and problem != self._file_problem:
            self.log.event("database.lost", problem, level="critical")
        self._file_problem = problem

    def _forget(self, child: ChildProcess) -> None:
        for fd in (child.events_fd, child.output_fd):
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)

    def _postmortem(self, child: ChildProcess, status: int, rusage_peak: int,
                    now: float) -> None:
        record = postmortem.build_record(child, status, rusage_peak, now,
                                         self.oom.struck(now))
        remains = postmortem.Remains.of(child)
        self._store(record, remains, child.spec.name)
        if self.loops[child.spec.work_type].on_crash(now):
            suspects = sorted({s.message_id for s in remains.started})
            self.log.event("crash.loop", f"CRASH LOOP: {child.spec.work_type} crashed "
                           f"{len(self.loops[child.spec.work_type].times)} times in "
                           f"{defaults.CRASH_LOOP_WINDOW_S:.0f}s; suspects: "
                           f"{', '.join(suspects) or 'none in flight'}", level="critical")

    def _store(self, record: CrashRecord, remains: postmortem.Remains, name: str) -> bool:
        """Store a crash record; one the database refused waits for the next try (every
        RESCUE_EVERY_S), so an outage or a lock never loses the evidence or the verdicts."""
        assert self.broker is not None
        try:
            crash_id = postmortem.store(self.broker, remains, record)
        except Exception as exc:
            if not any(r is record for r, _, _ in self.unstored):
                self.unstored.append((record, remains, name))
                self.log.event("crash.unstored", f"{record.summary} (could not store: {exc}; "
                               "will retry)", level="error")
            return False
        sentry.report_crash(record, crash_id)
        self.log.event("child.crashed", f"crash #{crash_id}: {record.summary} — "
                       f"pillbox crashes show {crash_id}", level="error", crash_id=crash_id,
                       cause=record.cause, child=name, pid=record.pid,
                       top_frame=top_frame(record.traceback, postmortem.LIBRARY_PATHS),
                       message_ids=[s.message_id for s in remains.started])
        return True

    def _store_unstored(self) -> None:
        for item in list(self.unstored):
            if not self._store(*item):
                return  # the database is still refusing: try again later
            self.unstored.remove(item)

    def _schedule_restart(self, child: ChildProcess, now: float) -> None:
        delay = self.trackers[child.spec.name].on_exit(child.started_at, now,
                                                        blamed_on_messages=bool(child.started))
        child.restart_at = now + delay
        if delay:
            self.log.event("child.backoff", f"restarting {child.spec.name} in {delay:.1f}s",
                           child=child.spec.name, delay_s=delay)

    def _restart_due(self, now: float) -> None:
        for index, child in enumerate(self.children):
            due = not child.alive and child.restart_at is not None and now >= child.restart_at
            if due and not self._promote_standby(index, child, now):
                self._spawn(child, now)

    def _promote_standby(self, index: int, dead: ChildProcess, now: float) -> bool:
        """Give a dead worker's slot to the booted standby (milliseconds instead of a boot),
        then boot a new standby in the dead child's place."""
        if dead.spec.role not in PROMOTABLE:
            return False
        standby_index = next((i for i, c in enumerate(self.children)
                              if c.spec.name == STANDBY), None)
        if standby_index is None:
            return False
        standby = self.children[standby_index]
        slot_spec, standby_spec = dead.spec, standby.spec
        if not standby.activate(slot_spec, now):
            return False
        dead.spec = standby_spec
        self.children[index], self.children[standby_index] = standby, dead
        self.log.event("child.promoted", f"{slot_spec.name}: standby pid {standby.pid} took "
                       "over", child=slot_spec.name, pid=standby.pid)
        self._spawn(dead, now)
        return True

    # -- watching ------------------------------------------------------------------------
    def _watch(self, now: float) -> None:
        sample = now - self._last_rss >= SAMPLE_RSS_EVERY_S
        if sample:
            self._last_rss = now
            self.oom.sample(now)
        for child in self.children:
            if not child.alive or child.killed_for is not None:
                continue
            overdue = child.overdue(now)
            if overdue is not None:
                self.log.event("delivery.timeout", f"{child.spec.name}: delivery "
                               f"{overdue.delivery_id} of {overdue.subscription} ran past its "
                               f"{overdue.timeout_s:g}s timeout; ending the process",
                               level="error")
                others = len(child.started) > 1  # they get the grace period to finish
                child.kill("timeout", now, blamed=overdue.delivery_id,
                           grace_s=defaults.KILL_GRACE_S if others else 0,
                           dump_wait_s=defaults.TIMEOUT_DUMP_WAIT_S)
            elif sample and self._over_memory(child):
                child.kill("memory", now, grace_s=0)
            elif self._silent(child, now):
                self.log.event("child.stalled", f"{child.spec.name}: no heartbeat for "
                               f"{now - child.last_heartbeat:.0f}s; restarting it",
                               level="error")
                child.kill("stalled", now, grace_s=0)
        if now - self._last_rescue > RESCUE_EVERY_S:
            self._last_rescue = now
            self._store_unstored()
            self._check_database_file()
            self._rescue(now)

    def _silent(self, child: ChildProcess, now: float) -> bool:
        """Ready and no heartbeat for the stall timeout, or still booting after the boot
        timeout (a standby waiting for its role is neither)."""
        if child.standing_by:
            return False
        limit = self.options.stall_timeout_s if child.ready else BOOT_TIMEOUT_S
        return now - child.last_heartbeat > limit

    def _over_memory(self, child: ChildProcess) -> bool:
        rss = child.sample_rss()
        limit = child.memory_limit(self.options.memory_limit_bytes)
        if limit is None or rss <= limit:
            return False
        self.log.event("child.memory", f"{child.spec.name}: RSS {rss / 2**20:.0f} MiB over its "
                       f"limit of {limit / 2**20:.0f} MiB; ending the process", level="error")
        return True

    def _rescue(self, now: float) -> None:
        assert self.broker is not None
        try:
            self.broker.rescue_expired(now)
        except Exception as exc:
            self.log.event("db.trouble", f"rescuing expired leases: {exc}", level="warning")
