"""The five workloads. Each one resets the system's storage, starts its worker under the
restart-on-exit supervisor (proc.Supervised), drives it, reads the job lines back and stops it.

All loops are bounded in count and time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import time
from typing import Any

import benchjobs
import psutil
from proc import Supervised, cpu_seconds
from systems import HANG_FRAME, POISON_FRAME, System

HERE = os.path.dirname(os.path.abspath(__file__))
WARMUP_ID = 99_000_000  # ids of warm-up jobs, never confused with measured ones


class Run:
    """One worker session: scratch files, the supervised process, its log."""

    def __init__(self, system: System, scratch: str, tag: str) -> None:
        self.system = system
        self.out = os.path.join(scratch, f"{system.key}-{tag}.out")
        self.log = os.path.join(scratch, f"{system.key}-{tag}.log")
        for path in (self.out, self.log):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        env = {**os.environ, **system.env(), "BENCH_OUT": self.out, "BENCH_SCRATCH": scratch,
               "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", "")}
        env.pop("PYTHONFAULTHANDLER", None)
        self.sup = Supervised(system.argv(), env, self.log, cwd=scratch)

    def start(self) -> float:
        self.sup.start()
        return self.sup.spawned_at

    def stop(self, grace_s: float = 10.0) -> dict[str, object]:
        return self.sup.stop(grace_s)

    def rows(self) -> list[tuple[str, int, float, float, int, int]]:
        return benchjobs.read(self.out)

    def log_text(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for(self, predicate: Any, timeout_s: float, step_s: float = 0.02) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(step_s)
        return predicate()


def _broker_procs(system: System) -> list[psutil.Process]:
    """redis-server, or PostgreSQL's background processes plus the backends serving the
    system's own database (not other databases' backends: other engineers' tests)."""
    procs = []
    db = system.pg_database()
    for p in psutil.process_iter(["name", "cmdline"]):
        name, cmd = p.info["name"], " ".join(p.info["cmdline"] or [])
        if system.broker == "Redis" and name == "redis-server":
            procs.append(p)
        elif system.broker == "PostgreSQL" and name == "postgres":
            title = cmd.split(": ", 2)[-1]  # "postgres: 15/main: user db host(port) state"
            words = title.split()
            backend = len(words) >= 3 and "(" in words[2]
            if not backend or words[1] == db:
                procs.append(p)
    return procs


def _cpu_delta(before: dict[int, float], procs: list[psutil.Process]) -> float:
    """CPU used since `before` by `procs` (processes started since count in full)."""
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system - before.get(p.pid, 0.0)
    return total


def _cpu_now(procs: list[psutil.Process]) -> dict[int, float]:
    now = {}
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            now[p.pid] = t.user + t.system
    return now


def _broker_ops(system: System) -> int | None:
    """Commands Redis has processed: divided by jobs, the broker work each job costs.
    (PostgreSQL's pg_stat_database counters proved unreliable over intervals this short: they
    are flushed lazily and under-counted commits by half in a check, so they are not used.)"""
    try:
        if system.broker == "Redis":
            import redis
            from systems import REDIS_URL

            r = redis.Redis.from_url(f"{REDIS_URL}/0")
            n = int(r.info("stats")["total_commands_processed"])
            r.close()
            return n
    except Exception:
        return None
    return None


def _busy_cores(before: Any, after: Any, wall: float) -> float:
    """Whole-machine CPU use over an interval, in cores (to show the noise of other work)."""
    busy = lambda t: t.user + t.nice + t.system + t.irq + t.softirq + t.steal  # noqa: E731
    return round((busy(after) - busy(before)) / wall, 2) if wall > 0 else 0.0


# -- 1. throughput -----------------------------------------------------------------------------
def throughput(system: System, scratch: str, n: int, cap_s: float, tag: str) -> dict[str, Any]:
    system.reset()
    system.open()
    run = Run(system, scratch, tag)
    ops0 = _broker_ops(system)
    t0 = time.perf_counter()
    for i in range(n):
        system.enqueue("n", i)
    enqueue_s = time.perf_counter() - t0
    system.close()
    system.after_enqueue()
    ops1 = _broker_ops(system)

    broker_cpu0 = _cpu_now(_broker_procs(system))
    machine0 = psutil.cpu_times()
    spawned = run.start()
    done = run.wait_for(lambda: benchjobs.count(run.out) >= n, cap_s, step_s=0.05)
    wall = time.time() - spawned
    tree = [p for p in [run.sup.root, *run.sup.descendants()] if p is not None]
    worker_cpu = cpu_seconds(tree)
    broker_cpu = _cpu_delta(broker_cpu0, _broker_procs(system))
    machine = _busy_cores(machine0, psutil.cpu_times(), wall)
    stop = run.stop()
    ops2 = _broker_ops(system)
    rows = [r for r in run.rows() if r[0] == "n"]
    ids = [r[1] for r in rows]
    ends = sorted(r[3] for r in rows)
    processed = len(set(ids))
    result: dict[str, Any] = {
        "n": n, "enqueue_s": round(enqueue_s, 3), "enqueue_per_s": round(n / enqueue_s, 1),
        "completed": processed, "duplicates": len(ids) - processed, "finished": done,
        "restarts": run.sup.restarts, "stop": stop, "machine_busy_cores": machine,
    }
    if ends:
        span = ends[-1] - spawned
        result["process_s"] = round(span if done else cap_s, 3)
        result["jobs_per_s"] = round(processed / (span if done else cap_s), 1)
        result["first_job_after_spawn_s"] = round(ends[0] - spawned, 3)
        if len(ends) > 1 and ends[-1] > ends[0]:
            result["steady_jobs_per_s"] = round((len(ends) - 1) / (ends[-1] - ends[0]), 1)
        result["worker_cpu_ms_per_job"] = round(1000 * worker_cpu / processed, 3)
        result["broker_cpu_ms_per_job"] = round(1000 * broker_cpu / processed, 3)
        if None not in (ops0, ops1, ops2):
            assert ops0 is not None and ops1 is not None and ops2 is not None
            unit = "redis_commands"
            result[f"enqueue_{unit}_per_job"] = round((ops1 - ops0) / n, 2)
            result[f"process_{unit}_per_job"] = round((ops2 - ops1) / processed, 2)
    return result


def bulk_enqueue(system: System, n: int) -> dict[str, Any] | None:
    if system.bulk_api is None:
        return None
    system.reset()
    system.open()
    t0 = time.perf_counter()
    system.enqueue_bulk("n", list(range(n)))
    took = time.perf_counter() - t0
    system.close()
    return {"n": n, "enqueue_s": round(took, 3), "enqueue_per_s": round(n / took, 1)}


# -- shared: start and warm up -----------------------------------------------------------------
def _start_warm(system: System, run: Run, warm_jobs: int = 4) -> bool:
    """Start the worker and wait until it has processed a few jobs, then let it go idle."""
    run.start()
    for k in range(warm_jobs):
        system.enqueue("n", WARMUP_ID + k)
    ok = run.wait_for(lambda: sum(1 for r in run.rows() if r[1] >= WARMUP_ID) >= warm_jobs,
                      60.0, step_s=0.05)
    time.sleep(1.0)
    return ok


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- 2. latency --------------------------------------------------------------------------------
def latency(system: System, scratch: str, n: int, rate: float, tag: str) -> dict[str, Any]:
    system.reset()
    system.open()
    run = Run(system, scratch, tag)
    warm = _start_warm(system, run)
    published: dict[int, float] = {}
    returned: dict[int, float] = {}
    call_ms = []
    t0 = time.time() + 0.05
    for i in range(n):
        delay = t0 + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        t_pub = time.time()
        system.enqueue("n", i)
        returned[i] = time.time()
        call_ms.append(1000 * (returned[i] - t_pub))
        published[i] = t_pub
    run.wait_for(lambda: sum(1 for r in run.rows() if r[1] < WARMUP_ID) >= n, 30.0)
    stop = run.stop()
    system.close()
    starts: dict[int, float] = {}
    for kind, i, start, _end, _pid, _ppid in run.rows():
        if kind == "n" and i in published and i not in starts:
            starts[i] = start
    lat = [1000 * (starts[i] - published[i]) for i in starts]
    after = [1000 * (starts[i] - returned[i]) for i in starts]  # once the publish returned
    return {
        "n": n, "rate_per_s": rate, "warm": warm, "received": len(lat),
        "p50_ms": round(_percentile(lat, 0.50), 2), "p90_ms": round(_percentile(lat, 0.90), 2),
        "p99_ms": round(_percentile(lat, 0.99), 2), "max_ms": round(max(lat), 2) if lat else None,
        "publish_call_p50_ms": round(statistics.median(call_ms), 3),
        "publish_call_p99_ms": round(_percentile(call_ms, 0.99), 3),
        "after_return_p50_ms": round(_percentile(after, 0.50), 2),
        "after_return_p99_ms": round(_percentile(after, 0.99), 2),
        "samples_ms": [round(x, 3) for x in lat], "restarts": run.sup.restarts, "stop": stop,
    }


# -- 3. poison pill ----------------------------------------------------------------------------
def poison(system: System, scratch: str, good: int, position: int, window_s: float,
           settle_s: float, tag: str) -> dict[str, Any]:
    system.reset()
    system.open()
    run = Run(system, scratch, tag)
    poison_id = None
    for i in range(good + 1):
        if i == position:
            poison_id = system.enqueue("p", i)
        else:
            system.enqueue("g", i)
    spawned = run.start()

    def good_done() -> int:
        return len({r[1] for r in run.rows() if r[0] == "g"})

    deadline = spawned + window_s
    all_good_at = None
    while time.time() < deadline:
        if all_good_at is None and good_done() >= good:
            all_good_at = time.time()
        if all_good_at is not None and time.time() >= all_good_at + settle_s:
            break
        time.sleep(0.1)
    observed_s = time.time() - spawned
    assert poison_id is not None
    fate = system.fate(poison_id, POISON_FRAME)
    stop = run.stop(grace_s=10.0)
    fate_after_stop = system.fate(poison_id, POISON_FRAME)
    system.close()
    rows = run.rows()
    good_ids = [r[1] for r in rows if r[0] == "g"]
    attempts = [r[2] for r in rows if r[0] == "P"]
    log = run.log_text()
    last_good = max((r[3] for r in rows if r[0] == "g"), default=None)
    if fate.at and attempts:
        fate.detail += f"; quarantined {fate.at - min(attempts):.1f} s after its first run"
    return {
        "good": good, "good_completed": len(set(good_ids)),
        "good_duplicates": len(good_ids) - len(set(good_ids)),
        "good_lost_or_stranded": good - len(set(good_ids)),
        "all_good_done_s": round(last_good - spawned, 2) if last_good and
        len(set(good_ids)) >= good else None,
        "poison_attempts": len(attempts),
        "poison_attempt_times_s": [round(t - spawned, 2) for t in sorted(attempts)],
        "fate": fate.as_dict(), "fate_after_stop": fate_after_stop.as_dict(),
        "job_traceback_in_worker_log": POISON_FRAME in log,
        "crash_mentioned_in_worker_log": any(s in log for s in (
            "SIGSEGV", "signal 11", "Segmentation fault", "code -11", "segfault")),
        "root_restarts": run.sup.restarts, "observed_s": round(observed_s, 1),
        "window_s": window_s, "stop": stop,
    }


# -- 4. hang -----------------------------------------------------------------------------------
def hang(system: System, scratch: str, good: int, window_s: float, tag: str) -> dict[str, Any]:
    system.reset()
    system.open()
    run = Run(system, scratch, tag)
    hang_id = system.enqueue("h", 0)
    for i in range(1, good + 1):
        system.enqueue("g", i)
    spawned = run.start()
    while time.time() < spawned + window_s:
        time.sleep(0.1)
    fate = system.fate(hang_id, HANG_FRAME)
    stop = run.stop(grace_s=10.0)
    system.close()
    rows = run.rows()
    good_rows = [r for r in rows if r[0] == "g"]
    good_ids = [r[1] for r in good_rows]
    attempts = sorted(r[2] for r in rows if r[0] == "H")
    done = len(set(good_ids))
    log = run.log_text()
    if fate.at and attempts:
        fate.detail += f"; quarantined {fate.at - attempts[0]:.1f} s after its first run"
    return {
        "good": good, "good_completed": done,
        "good_duplicates": len(good_ids) - done,
        "all_good_done_s": round(max(r[3] for r in good_rows) - spawned, 2)
        if done >= good else None,
        "hang_attempts": len(attempts),
        "hang_attempt_times_s": [round(t - spawned, 2) for t in attempts],
        "fate": fate.as_dict(),
        "hang_traceback_in_worker_log": HANG_FRAME in log,
        "root_restarts": run.sup.restarts, "window_s": window_s, "stop": stop,
    }


# -- 5. recovery -------------------------------------------------------------------------------
def recovery(system: System, scratch: str, rate: float, before_s: float, after_s: float,
             burst: int, settle_s: float, tag: str) -> dict[str, Any]:
    """Stream jobs; `before_s` in, SIGKILL every process that runs jobs and at once publish a
    burst, so work is waiting the moment anything can take it; keep streaming."""
    system.reset()
    system.open()
    run = Run(system, scratch, tag)
    warm = _start_warm(system, run)
    killed: dict[str, Any] = {}

    def kill() -> None:
        rows = run.rows()
        targets = system.kill_targets(run.sup.root, {r[4] for r in rows}, {r[5] for r in rows})
        # not the recovery: jobs run after the kill by a process that had run jobs before it,
        # by a killed process, or by a child a killed process had already forked (an RQ
        # work-horse). A warm spare that was idle (pillbox's standby worker) does count.
        excluded = {r[4] for r in rows} | {p.pid for p in targets}
        for p in targets:
            with contextlib.suppress(psutil.Error):
                excluded |= {c.pid for c in p.children(recursive=True)}
        killed["excluded"] = sorted(excluded)
        killed["pids"] = [p.pid for p in targets]
        with contextlib.suppress(psutil.Error):
            killed["names"] = sorted({" ".join(p.cmdline()[:4])[-70:] for p in targets})
        killed["at"] = time.time()
        for p in targets:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGKILL)

    published: dict[int, float] = {}
    i = 0
    t0 = time.time()
    end = t0 + before_s + after_s
    while time.time() < end:
        if not killed and time.time() >= t0 + before_s:
            kill()
            for _ in range(burst):
                published[i] = time.time()
                system.enqueue("n", i)
                i += 1
            continue
        delay = t0 + len(published) / rate - time.time()
        if delay > 0:
            time.sleep(min(delay, max(0.0, end - time.time())))
            continue
        published[i] = time.time()
        system.enqueue("n", i)
        i += 1
    n = len(published)
    run.wait_for(lambda: len({r[1] for r in run.rows() if r[1] < WARMUP_ID}) >= n, settle_s)
    stop = run.stop()
    system.close()
    t_kill = killed.get("at")
    rows = [r for r in run.rows() if r[0] == "n" and r[1] < WARMUP_ID]
    done = {r[1] for r in rows}
    result: dict[str, Any] = {
        "warm": warm, "killed": killed, "published": n, "completed": len(done),
        "duplicates": len(rows) - len(done), "root_restarts": run.sup.restarts, "stop": stop,
    }
    if t_kill is not None:
        result.update(recovery_times(rows, t_kill, set(killed.get("excluded", [])),
                                     len(killed.get("pids", [])), system.key == "rq"))
        result["published_before_kill_not_done"] = len(
            [k for k, t in published.items() if t < t_kill and k not in done])
        result["published_after_kill_not_done"] = len(
            [k for k, t in published.items() if t >= t_kill and k not in done])
    return result


def recovery_times(rows: list[tuple[str, int, float, float, int, int]], t_kill: float,
                   excluded: set[int], killed: int, by_parent: bool) -> dict[str, Any]:
    """From the kill: the first job done by a process that counts (see recovery), and the
    moment as many distinct such processes as were killed have each done one (every killed
    process replaced). RQ's jobs run in per-job work-horses: their parent, the new worker,
    is what replaces a killed worker."""
    firsts: dict[int, float] = {}
    for _kind, _i, start, end, pid, ppid in rows:
        if start < t_kill or pid in excluded:
            continue
        who = ppid if by_parent else pid
        firsts[who] = min(end, firsts.get(who, end))
    ends = sorted(firsts.values())
    out: dict[str, Any] = {}
    if ends:
        out["recovery_s"] = round(ends[0] - t_kill, 3)
    if killed and len(ends) >= killed:
        out["all_replaced_s"] = round(ends[killed - 1] - t_kill, 3)
    return out
