"""Where pillbox's time goes, on the paths the peer benchmark measures.

    python bench/peers/profile_pillbox.py [--database postgres|sqlite] [--jobs 10000]

1. publish: cProfile around one-call-per-job `app.publish` (the enqueue column);
2. processing: the worker tier draining a backlog of no-op jobs, sampled with py-spy
   (`--subprocesses`, on-CPU samples only) over a fixed window, plus the CPU each pillbox
   process spends per job (psutil), so the cost per job is split by process and by function.

Prints a summary and writes bench/results/profile-pillbox-<database>-<stamp>.json.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import datetime as dt
import json
import os
import pstats
import re
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def publish_profile(system: Any, n: int) -> dict[str, Any]:
    system.reset()
    system.open()
    for i in range(50):  # warm the pool and the statement cache
        system.enqueue("n", 10_000_000 + i)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for i in range(n):
        system.enqueue("n", i)
    prof.disable()
    wall = time.perf_counter() - t0
    system.close()
    stats = pstats.Stats(prof)
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{os.path.basename(filename)}:{line}({func})", "calls": nc,
                     "tottime_ms_per_publish": round(1000 * tt / n, 4),
                     "cumtime_ms_per_publish": round(1000 * ct / n, 4), "_cc": cc})
    rows.sort(key=lambda r: -r["cumtime_ms_per_publish"])
    top_cum = [{k: v for k, v in r.items() if k != "_cc"} for r in rows[:25]]
    rows.sort(key=lambda r: -r["tottime_ms_per_publish"])
    top_self = [{k: v for k, v in r.items() if k != "_cc"} for r in rows[:15]]
    return {"publishes": n, "ms_per_publish": round(1000 * wall / n, 3),
            "top_cumulative": top_cum, "top_self": top_self}


_PROC = re.compile(r"^process (\d+):\"?(.*?)\"?$")
_FRAME = re.compile(r"^(?P<func>\S+) \((?P<path>[^:]*):(?P<line>\d+)\)$")

#: thread kinds of a pillbox child, told by a frame near the thread's root
_THREADS = [("fetcher", "Fetcher._guarded"), ("slot (runs handlers)", "Fetcher._slot"),
            ("waker (LISTEN/NOTIFY)", "Consumer._waker"),
            ("main (heartbeats)", "Consumer._heartbeat_until_stopped"),
            ("main (supervisor loop)", "Supervisor.run")]
#: pillbox functions that name what a thread is doing, innermost wins
_WHAT = ("SQLBroker.pull", "SQLBroker.pull_suspect", "SQLBroker.ack", "SQLBroker.nack",
         "SQLBroker.extend", "SQLBroker.rescue_expired", "SQLBroker.publish",
         "PostgresBroker.wait_for_work", "SQLiteBroker.wait_for_work", "Reporter.send",
         "Supervisor._read", "Supervisor._watch", "Supervisor._reap", "Supervisor._wait",
         "Executor.run")
_WAITS = {"Connection.wait": "waiting for PostgreSQL", "Condition.wait": "idle (thread wait)",
          "Event.wait": "idle (thread wait)", "Queue.get": "idle (thread wait)",
          "EpollSelector.select": "idle (select)", "sleep": "idle (sleep)",
          "Connection.notifies": "waiting for PostgreSQL"}


def fold(raw_path: str) -> dict[str, Any]:
    """Summarise py-spy raw output recorded with --idle: for each pillbox process and each of
    its thread kinds, the share of wall-clock samples per activity, e.g. "waiting for
    PostgreSQL in SQLBroker.pull"."""
    acts: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(
        collections.Counter)
    with open(raw_path) as f:
        for line in f:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            frames = stack.split(";")
            proc = "?"
            while frames and frames[0].startswith("process "):  # nested: the last is ours
                m = _PROC.match(frames[0])
                proc = _role(m.group(2) if m else frames[0])
                frames = frames[1:]
            funcs = [m.group("func") if (m := _FRAME.match(fr)) else fr for fr in frames
                     if not fr.startswith("thread (")]
            kind = next((k for k, root in _THREADS if root in funcs), "other")
            acts[(proc, kind)][_activity(funcs)] += int(count_text)
    out: dict[str, Any] = {}
    for (proc, kind), counter in sorted(acts.items()):
        total = sum(counter.values())
        out.setdefault(proc, {})[kind] = {
            "samples": total,
            "activities": [(a, round(100 * c / total, 1)) for a, c in counter.most_common(8)]}
    return out


def _activity(funcs: list[str]) -> str:
    what = next((f for f in reversed(funcs) if f in _WHAT), None)
    leaf = funcs[-1] if funcs else "?"
    if "run" in funcs and any(f == "run" for f in funcs[-3:]) and "Executor._call" in funcs:
        return "handler (the job itself)"
    wait = _WAITS.get(leaf)
    if wait is None and "." not in leaf and leaf in _WAITS:
        wait = _WAITS[leaf]
    where = f" in {what}" if what else ""
    if wait:
        return wait + where
    return f"Python{where or ' (' + leaf + ')'}"


def _role(cmdline: str) -> str:
    for role in ("worker", "lane", "standby"):
        if f"pillbox.child {role}" in cmdline:
            return role
    if "pillbox run" in cmdline or "bin/pillbox" in cmdline:
        return "supervisor"
    return cmdline[-40:]


def worker_profile(system: Any, scratch: str, jobs: int, seconds: float) -> dict[str, Any]:
    import benchjobs
    import psutil
    from workloads import Run

    system.reset()
    system.open()
    system.enqueue_bulk("n", list(range(jobs)))
    system.close()
    run = Run(system, scratch, "profile")
    run.start()
    ok = run.wait_for(lambda: benchjobs.count(run.out) >= 200, 60.0, step_s=0.05)
    if not ok:
        run.stop()
        raise SystemExit("pillbox did not start processing")
    root = run.sup.root
    assert root is not None
    procs = {p.pid: p for p in [root, *run.sup.descendants()]}
    roles = {}
    for pid, p in procs.items():
        try:
            roles[pid] = _role(" ".join(p.cmdline()))
        except psutil.Error:
            continue
    cpu0 = {pid: _cpu(p) for pid, p in procs.items()}
    n0, t0 = benchjobs.count(run.out), time.time()
    raw = os.path.join(scratch, "pyspy.txt")
    spy = subprocess.run([os.path.join(os.path.dirname(sys.executable), "py-spy"), "record",
                          "--pid", str(root.pid), "--subprocesses", "--duration",
                          str(int(seconds)), "--rate", "100", "--format", "raw", "--idle",
                          "--threads", "--nonblocking", "--output", raw],
                         capture_output=True, text=True, timeout=seconds + 60)
    n1, t1 = benchjobs.count(run.out), time.time()
    cpu1 = {pid: _cpu(p) for pid, p in procs.items()}
    run.stop()
    done = max(1, n1 - n0)
    per_role: dict[str, float] = collections.defaultdict(float)
    for pid, role in roles.items():
        if pid in cpu0 and pid in cpu1:
            per_role[role] += cpu1[pid] - cpu0[pid]
    result: dict[str, Any] = {
        "window_s": round(t1 - t0, 2), "jobs_in_window": n1 - n0,
        "jobs_per_s_in_window": round((n1 - n0) / (t1 - t0), 1),
        "cpu_ms_per_job_by_process": {r: round(1000 * c / done, 3) for r, c in per_role.items()},
        "pyspy_returncode": spy.returncode, "pyspy_stderr": spy.stderr[-500:],
    }
    if os.path.exists(raw):
        result["samples"] = fold(raw)
    return result


def _cpu(p: Any) -> float:
    try:
        t = p.cpu_times()
        return float(t.user + t.system)
    except Exception:
        return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--publishes", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=1,
                        help="handler slots per worker process (the benchmark uses 1)")
    parser.add_argument("--skip-publish", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, HERE)
    from run import ensure_venv

    ensure_venv(os.path.abspath(__file__))
    import systems

    os.environ["BENCH_PILLBOX_CONCURRENCY"] = str(args.concurrency)
    scratch = os.path.join("/tmp", f"pillbox-bench-profile-{os.getpid()}")
    systems.clean_scratch(scratch)
    os.environ["BENCH_SCRATCH"] = scratch
    systems.ensure_pg_databases()
    system = (systems.PillboxPostgres(scratch) if args.database == "postgres"
              else systems.Pillbox(scratch))
    result: dict[str, Any] = {"database": args.database, "concurrency": args.concurrency,
                              "loadavg_before": os.getloadavg()}
    if not args.skip_publish:
        result["publish"] = publish_profile(system, args.publishes)
    result["processing"] = worker_profile(system, scratch, args.jobs, args.seconds)
    result["loadavg_after"] = os.getloadavg()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    name = f"profile-pillbox-{args.database}-c{args.concurrency}-{stamp}.json"
    out = os.path.join(REPO, "bench", "results", name)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print_summary(result)
    print(f"\nwritten: {os.path.relpath(out, REPO)}")
    return 0


def print_summary(r: dict[str, Any]) -> None:
    pub = r.get("publish")
    if pub:
        print(f"== publish ({r['database']}): {pub['ms_per_publish']} ms per app.publish call")
        for row in pub["top_cumulative"][:18]:
            print(f"  {row['cumtime_ms_per_publish']:8.3f} ms cum "
                  f"{row['tottime_ms_per_publish']:8.3f} ms self  x{row['calls']:<7} "
                  f"{row['function']}")
    proc = r["processing"]
    print(f"\n== processing: {proc['jobs_per_s_in_window']} jobs/s over {proc['window_s']} s "
          f"(py-spy running); CPU ms per job by process: {proc['cpu_ms_per_job_by_process']}")
    for role, kinds in proc.get("samples", {}).items():
        for kind, d in kinds.items():
            print(f"\n-- {role} / {kind}: {d['samples']} wall-clock samples")
            for activity, pct in d["activities"]:
                print(f"   {pct:5.1f}%  {activity}")

if __name__ == "__main__":
    sys.exit(main())
