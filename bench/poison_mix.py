"""What poison messages cost the innocent ones.

A steady stream of messages (`--rate` per second for `--seconds`) with a fraction
(`--poison`) that segfault their worker, under `pillbox run --only worker`. Reports, for
the good messages, publish-to-acked latency (p50, p99, max) and how long after the stream
ended the last one was acked; for the poison ones, how many were quarantined, and how long
that took. Each poison fraction runs `--reps` times on a fresh database; the first fraction
given is the baseline (0 by default).

    python bench/poison_mix.py [--database URL] [--poison 0 0.01] [--lanes 1]

Writes bench/results/poison-mix-<engine>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from recovery import HERE, fresh_url, stop_run

from pillbox.messages import Delivery


def load_app(url: str) -> Any:
    import importlib
    import os

    os.environ["BENCH_DATABASE"] = url
    import poisonapp

    return importlib.reload(poisonapp).app


def start(url: str, workers: int, concurrency: int, extra: list[str]) -> subprocess.Popen[bytes]:
    import os

    env = {**os.environ, "BENCH_DATABASE": url, "BENCH_CONCURRENCY": str(concurrency),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "pillbox", "run", "poisonapp:app", "--only",
                             "worker", "--workers", str(workers), *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def settled(app: Any, total: int) -> list[Delivery] | None:
    rows = [d for d in app.broker.deliveries(subscription="work", limit=total + 10)
            if d.payload["i"] >= 0]
    if len(rows) < total or any(d.state not in ("acked", "dead") for d in rows):
        return None
    return rows


def one_run(base: str | None, args: argparse.Namespace, poison: float, rep: int
            ) -> dict[str, Any]:
    url = fresh_url(base, f"mix{rep}")
    app = load_app(url)
    app.broker.migrate()
    rng = random.Random(rep)
    proc = start(url, args.workers, args.concurrency, args.extra)
    try:
        # the stream starts once the workers are up: start-up is measured elsewhere
        warm = app.publish("work", {"i": -1, "poison": False})
        deadline = time.monotonic() + 60
        while app.broker.deliveries(message_id=warm)[0].state != "acked":
            if time.monotonic() > deadline:
                raise SystemExit("the warm-up message was not acked in 60s")
            time.sleep(0.05)
        total = int(args.rate * args.seconds)
        poisoned = 0
        t0 = time.monotonic()
        for i in range(total):  # a steady stream, as a web tier would publish
            bad = rng.random() < poison
            poisoned += bad
            app.publish("work", {"i": i, "poison": bad})
            pause = t0 + (i + 1) / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        stream_end = time.time()
        deadline = time.monotonic() + args.settle_timeout
        rows = None
        while rows is None and time.monotonic() < deadline:
            rows = settled(app, total)
            if rows is None:
                time.sleep(0.2)
        if rows is None:
            raise SystemExit(f"not settled in {args.settle_timeout}s (poison {poison})")
    finally:
        stop_run(proc)
    good = [d for d in rows if not d.payload["poison"]]
    bad = [d for d in rows if d.payload["poison"]]
    latency = sorted((d.finished_at or 0) - d.published_at for d in good)
    return {
        "poison": poison, "messages": total, "poisoned": poisoned,
        "good_acked": sum(d.state == "acked" for d in good),
        "good_dead": sum(d.state == "dead" for d in good),
        "poison_dead": sum(d.state == "dead" and d.dead_reason == "poison pill" for d in bad),
        "p50_s": statistics.median(latency),
        "p99_s": latency[int(0.99 * (len(latency) - 1))],
        "max_s": latency[-1],
        "drain_after_stream_s": max(d.finished_at or 0 for d in rows) - stream_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", help="PostgreSQL URL (default: a fresh SQLite file)")
    parser.add_argument("--poison", type=float, nargs="+", default=[0.0, 0.01])
    parser.add_argument("--rate", type=float, default=200.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--settle-timeout", type=float, default=300.0)
    parser.add_argument("--label", default="", help="suffix of the results file")
    parser.add_argument("extra", nargs="*", help="more `pillbox run` options, after --")
    args = parser.parse_args()
    engine = "postgres" if args.database else "sqlite"
    out: list[dict[str, Any]] = []
    for poison in args.poison:
        for rep in range(args.reps):
            result = one_run(args.database, args, poison, rep)
            print(json.dumps(result), flush=True)
            out.append(result)
    print(f"\n{engine}: {args.rate:.0f} msg/s for {args.seconds:.0f}s, {args.workers} workers x "
          f"concurrency {args.concurrency}, medians of {args.reps} runs\n")
    print("| poison | good p50 | good p99 | good max | drain after stream | quarantined |")
    print("|---|---|---|---|---|---|")
    for poison in args.poison:
        runs = [r for r in out if r["poison"] == poison]
        med = {k: statistics.median(r[k] for r in runs)
               for k in ("p50_s", "p99_s", "max_s", "drain_after_stream_s")}
        print(f"| {poison:.1%} | {med['p50_s'] * 1000:.0f} ms | {med['p99_s'] * 1000:.0f} ms | "
              f"{med['max_s']:.2f} s | {med['drain_after_stream_s']:.2f} s | "
              f"{sum(r['poison_dead'] for r in runs)}/{sum(r['poisoned'] for r in runs)} |")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    name = f"poison-mix-{engine}{'-' + args.label if args.label else ''}.json"
    (results / name).write_text(json.dumps({"args": vars(args), "runs": out}, indent=2))


if __name__ == "__main__":
    main()
