"""Runtime benchmarks (issue: supervised runtime).

1. recovery: a steady stream of messages; SIGKILL a worker; time from its death to the next
   message acked (1 worker: mostly the restart; 2 workers: the survivor carries on);
2. supervision cost: acks/s of no-op handlers under `pillbox run` (1 worker process) versus
   the same handler called in a plain loop on the same broker, two ways: the naive loop
   (pull `concurrency`, call, ack each) and the best loop (lease `concurrency` + PREFETCH_MAX
   ahead and ack the finished batch in the next pull, which is what a worker does on a
   backlog of fast handlers). The second is the fair measure of what supervision costs.

    python bench/recovery.py [--database URL] [--reps 5] [--messages 5000]

Writes bench/results/recovery.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from pillbox import defaults

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def fresh_url(base: str | None, label: str) -> str:
    if base is None:
        return f"sqlite:///{tempfile.mkdtemp(prefix='pillbox-bench-')}/{label}.db"
    import psycopg
    from psycopg import sql

    schema = f"bench_{label}_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return f"{base}?options=-csearch_path%3D{schema}"


def load_app(url: str, concurrency: int) -> Any:
    os.environ["BENCH_DATABASE"] = url
    os.environ["BENCH_CONCURRENCY"] = str(concurrency)
    import importlib

    import benchapp

    return importlib.reload(benchapp).app


def start_run(url: str, workers: int, concurrency: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BENCH_DATABASE": url, "BENCH_CONCURRENCY": str(concurrency),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "pillbox", "run", "benchapp:app", "--only",
                             "worker", "--workers", str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_run(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def worker_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    pids = []
    for child in psutil.Process(proc.pid).children():
        try:
            if child.name() == "pb-worker" and child.status() != psutil.STATUS_ZOMBIE:
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(predicate)


def recovery(base: str | None, workers: int, reps: int) -> list[float]:
    url = fresh_url(base, f"recovery{workers}")
    app = load_app(url, 4)
    broker = app.broker
    proc = start_run(url, workers, 4)
    stop = threading.Event()

    def stream() -> None:
        while not stop.is_set():
            app.publish("noop", {})
            stop.wait(0.005)

    publisher = threading.Thread(target=stream, daemon=True)
    publisher.start()
    results = []
    try:
        wait_for(lambda: broker.deliveries(subscription="noop", state="acked", limit=1), 60)
        for _ in range(reps):
            wait_for(lambda: len(worker_pids(proc)) == workers, 30)
            # pace the kills past the healthy period, so each one is a first crash (restarted
            # at once) and not a crash loop (backed off): this paces, it synchronises nothing
            time.sleep(defaults.RESTART_HEALTHY_S + 0.5)
            victim = worker_pids(proc)[0]
            killed_at = time.time()
            os.kill(victim, signal.SIGKILL)
            # the ack's own timestamp is measured, so polling slowly costs no precision
            first = wait_for(lambda at=killed_at: _first_ack_after(broker, at), 30,
                             interval_s=0.25)
            results.append(first - killed_at)
    finally:
        stop.set()
        publisher.join()
        stop_run(proc)
        app.close()
    return results


def _first_ack_after(broker: Any, after: float) -> float | None:
    acked = broker.deliveries(subscription="noop", state="acked", limit=1_000_000)
    times = [d.finished_at for d in acked if d.finished_at and d.finished_at > after]
    return min(times) if times else None


def under_run(base: str | None, messages: int, concurrency: int) -> float:
    url = fresh_url(base, "run")
    app = load_app(url, concurrency)
    app.broker.publish_batch("noop", ["{}"] * messages, time.time())
    proc = start_run(url, 1, concurrency)
    try:
        # rates come from the ack timestamps, so a slow poll here costs no precision, and a
        # fast one would compete with the worker (stats() scans every delivery)
        wait_for(lambda: app.broker.stats(time.time())[0].backlog == 0
                 and app.broker.stats(time.time())[0].in_flight == 0, 600, interval_s=0.5)
    finally:
        stop_run(proc)
    rate = _ack_rate(app.broker)
    app.close()
    return rate


def plain_loop(base: str | None, messages: int, concurrency: int, ahead: bool) -> float:
    url = fresh_url(base, "loop")
    app = load_app(url, concurrency)
    broker = app.broker
    broker.publish_batch("noop", ["{}"] * messages, time.time())
    handler = app.subscriptions["noop"].handler
    limit = concurrency + defaults.PREFETCH_MAX if ahead else concurrency
    finished: list[Any] = []
    while True:
        leases = broker.pull("noop", "loop", limit, 30, time.time(), acks=finished)
        finished = []
        if not leases:
            break
        for lease in leases:
            handler(lease.message)
            if ahead:
                finished.append(lease)
            else:
                broker.ack(lease, time.time())
    rate = _ack_rate(broker)
    app.close()
    return rate


def _ack_rate(broker: Any) -> float:
    acked = sorted(d.finished_at for d in broker.deliveries(subscription="noop", state="acked",
                                                            limit=1_000_000))
    return (len(acked) - 1) / (acked[-1] - acked[0])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", default=None, help="postgresql://... (default: SQLite)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    engine = "postgres" if args.database else "sqlite"
    out: dict[str, Any] = {"engine": engine, "reps": args.reps, "messages": args.messages}
    out["recovery_1_worker_s"] = recovery(args.database, 1, args.reps)
    out["recovery_2_workers_s"] = recovery(args.database, 2, args.reps)
    for concurrency in (1, 4):
        runs = [under_run(args.database, args.messages, concurrency) for _ in range(3)]
        loops = [plain_loop(args.database, args.messages, concurrency, False) for _ in range(3)]
        best = [plain_loop(args.database, args.messages, concurrency, True) for _ in range(3)]
        out[f"run_c{concurrency}_per_s"] = runs
        out[f"loop_c{concurrency}_per_s"] = loops
        out[f"loop_ahead_c{concurrency}_per_s"] = best
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / f"recovery-{engine}.json").write_text(json.dumps(out, indent=2))
    print(f"| {engine} | median (min-max) |\n|---|---|")
    print(f"| death → next ack, 1 worker (s) | {spread(out['recovery_1_worker_s'])} |")
    print(f"| death → next ack, 2 workers (s) | {spread(out['recovery_2_workers_s'])} |")
    for c in (1, 4):
        run, loop = out[f"run_c{c}_per_s"], out[f"loop_c{c}_per_s"]
        best = out[f"loop_ahead_c{c}_per_s"]
        print(f"| pillbox run, concurrency {c} (acks/s) | {spread(run)} |")
        print(f"| naive loop, batch {c}, ack each (acks/s) | {spread(loop)} |")
        print(f"| best loop, {c} + {defaults.PREFETCH_MAX} ahead, acks in the next pull "
              f"(acks/s) | {spread(best)} |")
        print(f"| run / naive loop, concurrency {c} | "
              f"{statistics.median(run) / statistics.median(loop):.2f} |")
        print(f"| run / best loop, concurrency {c} | "
              f"{statistics.median(run) / statistics.median(best):.2f} |")


if __name__ == "__main__":
    main()
