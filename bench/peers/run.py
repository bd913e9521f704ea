"""Run pillbox and the tools users would pick instead on the same workloads, one after another,
against the real Redis and PostgreSQL on this machine; write raw JSON to bench/results/ and the
report to docs/benchmarks-peers.md.

    python bench/peers/run.py                  # everything (about 30-40 min on 2 cores)
    python bench/peers/run.py --quick          # a smoke run: small counts, 1 rep
    python bench/peers/run.py --systems celery,pillbox-postgres --workloads latency

The peers are not dependencies of pillbox: the first run creates bench/peers/.venv (git-ignored)
from bench/peers/requirements.txt plus pillbox itself (editable), then re-runs itself in it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VENV = os.path.join(HERE, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
RESULTS = os.path.join(REPO, "bench", "results")

WORKLOADS = ("throughput", "latency", "poison", "hang", "recovery")


def ensure_venv(script: str = os.path.abspath(__file__)) -> None:
    """Re-exec `script` inside bench/peers/.venv, creating the venv on first use."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(VENV_PY):
        print(f"creating {VENV} (the peers and matplotlib; pillbox editable)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        pip = [VENV_PY, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", os.path.join(HERE, "requirements.txt")], check=True)
        subprocess.run([*pip, "-e", REPO], check=True)
    os.execv(VENV_PY, [VENV_PY, script, *sys.argv[1:]])


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["pillbox", "celery", "kombu", "billiard", "rq", "dramatiq", "huey", "procrastinate",
             "redis", "psycopg", "psycopg-binary", "psycopg-pool", "psutil", "matplotlib",
             "py-spy"]
    found = {"python": platform.python_version()}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def services() -> dict[str, str]:
    import sqlite3

    import psycopg
    import redis
    from systems import PG_SERVER, REDIS_URL, ensure_pg_databases

    r = redis.Redis.from_url(f"{REDIS_URL}/0")
    info = r.info("server")
    persistence = r.config_get("save").get("save", "?"), r.config_get("appendonly")
    r.close()
    with psycopg.connect(f"{PG_SERVER}/postgres") as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
        fsync = conn.execute("SHOW fsync").fetchone()[0]
    ensure_pg_databases()
    return {
        "redis": f"{info['redis_version']} (save={persistence[0]!r}, "
                 f"appendonly={persistence[1].get('appendonly')})",
        "postgresql": f"{pg} (fsync={fsync}, synchronous_commit={sync})",
        "sqlite": sqlite3.sqlite_version,
    }


def pillbox_tree() -> dict[str, Any]:
    """Which pillbox was measured: the commit, and whether src/ had uncommitted changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", REPO, *args], capture_output=True, text=True)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "src_uncommitted_files": len(git("status", "--porcelain", "src").splitlines())}


def machine() -> dict[str, Any]:
    import psutil

    return {
        "kernel": platform.release(), "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="", help="comma-separated keys (default: all)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--reps", type=int, default=3, help="reps of throughput, latency, "
                        "recovery")
    parser.add_argument("--failure-reps", type=int, default=1, help="reps of poison and hang")
    parser.add_argument("--jobs", type=int, default=20_000, help="throughput job count")
    parser.add_argument("--cap", type=float, default=60.0,
                        help="longest processing phase of one throughput rep, seconds")
    parser.add_argument("--quick", action="store_true", help="smoke run: small counts, 1 rep")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--out", default="", help="JSON path (default bench/results/peers-*.json)")
    args = parser.parse_args()
    ensure_venv()
    sys.path.insert(0, HERE)

    import systems as sysmod
    import workloads as wl

    workloads = [w for w in args.workloads.split(",") if w]
    bad = set(workloads) - set(WORKLOADS)
    if bad:
        parser.error(f"unknown workload(s) {', '.join(sorted(bad))}")
    p = {  # parameters
        "jobs": 2_000 if args.quick else args.jobs, "cap_s": 30.0 if args.quick else args.cap,
        "reps": 1 if args.quick else args.reps,
        "failure_reps": 1 if args.quick else args.failure_reps,
        "latency_jobs": 50 if args.quick else 150, "latency_rate": 10.0,
        "poison_good": 100 if args.quick else 500, "poison_window_s": 60.0,
        "poison_settle_s": 10.0, "hang_good": 100, "hang_window_s": 30.0,
        "recovery_rate": 10.0, "recovery_before_s": 2.0, "recovery_after_s": 3.0,
        "recovery_burst": 20, "recovery_settle_s": 8.0,
    }
    p["poison_position"] = p["poison_good"] // 4
    scratch = os.path.join("/tmp", f"pillbox-bench-peers-{os.getpid()}")
    sysmod.clean_scratch(scratch)
    os.environ["BENCH_SCRATCH"] = scratch
    chosen = sysmod.make([k for k in args.systems.split(",") if k], scratch)
    started = time.time()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    out_path = args.out or os.path.join(RESULTS, f"peers-{stamp}.json")
    doc: dict[str, Any] = {
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python bench/peers/run.py " + " ".join(sys.argv[1:]),
        "versions": versions(), "services": services(), "machine": machine(),
        "pillbox_tree": pillbox_tree(),
        "params": p, "systems": {s.key: {"label": s.label, "broker": s.broker,
                                         "config": s.config, "bulk_api": s.bulk_api,
                                         "time_limit": s.time_limit, "retries": s.retries}
                                 for s in chosen},
        "results": {w: {s.key: [] for s in chosen} for w in workloads},
    }
    if "throughput" in workloads:
        doc["results"]["bulk_enqueue"] = {s.key: [] for s in chosen}

    def save() -> None:
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        doc["elapsed_s"] = round(time.time() - started, 1)
        with open(out_path + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(out_path + ".tmp", out_path)

    def step(workload: str, system: Any, rep: int, fn: Any) -> None:
        t = time.time()
        label = f"[{time.time() - started:7.1f}s] {workload:<10} {system.key:<17} rep {rep + 1}"
        print(label, end=" ", flush=True)
        load = os.getloadavg()[0]
        try:
            result = fn()
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()}
            with contextlib.suppress(Exception):
                system.close()
        result["loadavg_1m_before"] = round(load, 2)
        result["took_s"] = round(time.time() - t, 1)
        doc["results"][workload][system.key].append(result)
        print(summarize(workload, result), flush=True)
        save()

    for workload in workloads:
        reps = p["failure_reps"] if workload in ("poison", "hang") else p["reps"]
        for rep in range(reps):
            for s in chosen:
                tag = f"{workload}-{rep}"
                if workload == "throughput":
                    step(workload, s, rep, lambda s=s, tag=tag: wl.throughput(
                        s, scratch, p["jobs"], p["cap_s"], tag))
                    if s.bulk_api and rep == 0:  # a side measurement: once
                        step("bulk_enqueue", s, rep,
                             lambda s=s: wl.bulk_enqueue(s, p["jobs"]) or {})
                elif workload == "latency":
                    step(workload, s, rep, lambda s=s, tag=tag: wl.latency(
                        s, scratch, p["latency_jobs"], p["latency_rate"], tag))
                elif workload == "poison":
                    step(workload, s, rep, lambda s=s, tag=tag: wl.poison(
                        s, scratch, p["poison_good"], p["poison_position"],
                        p["poison_window_s"], p["poison_settle_s"], tag))
                elif workload == "hang":
                    step(workload, s, rep, lambda s=s, tag=tag: wl.hang(
                        s, scratch, p["hang_good"], p["hang_window_s"], tag))
                elif workload == "recovery":
                    step(workload, s, rep, lambda s=s, tag=tag: wl.recovery(
                        s, scratch, p["recovery_rate"], p["recovery_before_s"],
                        p["recovery_after_s"], p["recovery_burst"], p["recovery_settle_s"],
                        tag))
    doc["finished_utc"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    doc["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    save()
    print(f"raw results: {os.path.relpath(out_path, REPO)} ({doc['elapsed_s'] / 60:.1f} min)")
    if not args.no_report:
        import report

        report.write(out_path)
    return 0


def summarize(workload: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"ERROR {r['error']}"
    if workload == "throughput":
        return (f"enqueue {r.get('enqueue_per_s')}/s, process {r.get('jobs_per_s')}/s "
                f"({r.get('completed')}/{r.get('n')}{'' if r.get('finished') else ', CAPPED'})")
    if workload == "bulk_enqueue":
        return f"bulk enqueue {r.get('enqueue_per_s')}/s"
    if workload == "latency":
        return f"p50 {r.get('p50_ms')} ms, p99 {r.get('p99_ms')} ms ({r.get('received')} jobs)"
    if workload == "poison":
        return (f"good {r['good_completed']}/{r['good']} dup {r['good_duplicates']}, poison x"
                f"{r['poison_attempts']}: {r['fate']['verdict']} ({r['fate']['state']})")
    if workload == "hang":
        return (f"good {r['good_completed']}/{r['good']}, hang x{r['hang_attempts']}: "
                f"{r['fate']['verdict']} ({r['fate']['state']})")
    if workload == "recovery":
        return (f"recovery {r.get('recovery_s')} s, killed {len(r['killed'].get('pids', []))}"
                f" pid(s), not done {r.get('published_before_kill_not_done')}"
                f"+{r.get('published_after_kill_not_done')}")
    return ""


if __name__ == "__main__":
    sys.exit(main())
