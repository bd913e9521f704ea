"""Broker throughput against the engine's own physical limit, for SQLite and PostgreSQL.

For each engine, each run measures on a fresh database:
- raw commit: single-row INSERT + COMMIT on one connection (SQLite: WAL with the same
  `synchronous` setting the broker uses, FULL by default; PostgreSQL: psycopg), the rate a
  durable one-transaction-per-operation design can never beat;
- publish: `broker.publish`, one message per transaction;
- publish_batch: `broker.publish_batch` of 100 messages per transaction;
- pull+ack (batch 1, 10, 100): `broker.pull(limit=batch)` then `broker.ack` for each message
  (one transaction per pull, one per ack);
- pull with acks (batch 1, 10, 100): `broker.pull(limit=batch, acks=previous batch)`, the
  worker's own path, which acks what it finished in its next pull's transaction.

Each operation is measured in chunks that alternate with chunks of raw commits on the same
engine (default 10 of each), so its ratio compares two rates taken over the same seconds:
the machine may be shared and its fsync latency drifts. It prints a markdown table (median
of the runs, min-max spread, and the median of the per-run ratios to raw commit) and writes
JSON to bench/results/broker.json.

    python bench/broker.py                       # both engines, 3 runs
    python bench/broker.py --engines sqlite --runs 5 --messages 4000
    python bench/broker.py --profile pull_ack_10 # cProfile one measurement of the last run
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from pillbox.broker import SQLBroker, open_broker

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).parent / "results" / "broker.json"
PULL_BATCHES = (1, 10, 100)
PUBLISH_BATCH = 100
PAYLOAD = json.dumps({"user": "ada", "channel": "incident-42", "text": "x" * 64})
OPERATIONS = ("raw_commit", "publish", "publish_batch",
              *(f"pull_ack_{b}" for b in PULL_BATCHES),
              *(f"pull_with_acks_{b}" for b in PULL_BATCHES))
_schemas = itertools.count()


@dataclass(frozen=True)
class Sub:
    name: str
    topic: str
    max_attempts: int = 5
    max_crashes: int = 3


# -- databases ------------------------------------------------------------------------------
@contextmanager
def fresh_database(engine: str, postgres_url: str, folder: Path) -> Iterator[str]:
    """A new empty database URL of the engine, removed afterwards."""
    if engine == "sqlite":
        path = folder / f"bench-{next(_schemas)}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    schema = f"pbbench_{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    separator = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{separator}options={quote(f'-csearch_path={schema}', safe='')}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


class RawCommits:
    """Single-row INSERT + COMMIT per operation, straight on the engine, on its own
    connection and table."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            path, _, query = url[len("sqlite:///"):].partition("?")
            params = dict(p.split("=", 1) for p in query.split("&") if p)
            self.conn: Any = sqlite3.connect(path, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode = WAL").fetchone()
            self.conn.execute(f"PRAGMA synchronous = {params.get('synchronous', 'full').upper()}")
            self.conn.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
            self.run = self._run_sqlite
        else:
            self.conn = psycopg.connect(url)
            self.conn.execute("CREATE TABLE raw (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)")
            self.conn.commit()
            self.run = self._run_postgres

    def _run_sqlite(self, k: int) -> int:
        for _ in range(k):
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("INSERT INTO raw (payload) VALUES (?)", (PAYLOAD,))
            self.conn.execute("COMMIT")
        return k

    def _run_postgres(self, k: int) -> int:
        for _ in range(k):
            self.conn.execute("INSERT INTO raw (payload) VALUES (%s)", (PAYLOAD,))
            self.conn.commit()
        return k

    def close(self) -> None:
        self.conn.close()


# -- broker operations ----------------------------------------------------------------------
def open_bench_broker(url: str, topic: str) -> SQLBroker:
    broker = open_broker(url, pool_size=1)
    broker.register([topic], [Sub(topic + "-sub", topic)], time.time())
    return broker


class Operation:
    """One broker operation, run in chunks: `run(k)` handles about k messages and returns
    how many it did."""

    def __init__(self, broker: SQLBroker, topic: str) -> None:
        self.broker, self.topic, self.sub = broker, topic, topic + "-sub"

    def prepare(self, n: int) -> None:
        """Untimed set-up for n messages."""

    def run(self, k: int) -> int:
        raise NotImplementedError

    def finish(self) -> int:
        """Timed wrap-up after the last chunk; returns messages it completed."""
        return 0


class Publish(Operation):
    def run(self, k: int) -> int:
        for _ in range(k):
            self.broker.publish(self.topic, PAYLOAD, time.time())
        return k


class PublishBatch(Operation):
    def run(self, k: int) -> int:
        batches = max(1, k // PUBLISH_BATCH)
        for _ in range(batches):
            self.broker.publish_batch(self.topic, [PAYLOAD] * PUBLISH_BATCH, time.time())
        return batches * PUBLISH_BATCH


class PullAck(Operation):
    """pull(limit=batch), then ack each lease in its own transaction."""

    def __init__(self, broker: SQLBroker, topic: str, batch: int) -> None:
        super().__init__(broker, topic)
        self.batch = batch

    def prepare(self, n: int) -> None:
        for start in range(0, n, 1000):
            self.broker.publish_batch(self.topic, [PAYLOAD] * min(1000, n - start), time.time())

    def run(self, k: int) -> int:
        done = 0
        while done < k:
            leases = self.broker.pull(self.sub, "bench", min(self.batch, k - done), 60.0,
                                      time.time())
            if not leases:
                raise RuntimeError("the backlog ran out")
            for lease in leases:
                if not self.broker.ack(lease, time.time()):
                    raise RuntimeError(f"ack of delivery {lease.delivery_id} was refused")
            done += len(leases)
        return done


class PullWithAcks(PullAck):
    """The worker's path: each pull acks the previous batch in the same transaction."""

    def __init__(self, broker: SQLBroker, topic: str, batch: int) -> None:
        super().__init__(broker, topic, batch)
        self.finished: list[Any] = []

    def prepare(self, n: int) -> None:
        super().prepare(n + self.batch)  # pulls run one batch ahead of acks

    def run(self, k: int) -> int:
        done = 0
        while done < k:
            leases = self.broker.pull(self.sub, "bench", min(self.batch, k - done), 60.0,
                                      time.time(), acks=self.finished)
            done += len(self.finished)
            if not leases:
                raise RuntimeError("the backlog ran out")
            self.finished = leases
        return done

    def finish(self) -> int:
        self.broker.ack_many(self.finished, time.time())
        done, self.finished = len(self.finished), []
        return done


def measure(engine: str, postgres_url: str, folder: Path, n: int, raw_n: int,
            make: Callable[[SQLBroker, str], Operation], chunks: int,
            profiler: cProfile.Profile | None) -> tuple[float, float]:
    """(raw commit rate, operation rate), taken in alternating chunks so both see the same
    machine: the load of a shared machine drifts within seconds."""
    with fresh_database(engine, postgres_url, folder) as raw_url, \
            fresh_database(engine, postgres_url, folder) as url:
        raw = RawCommits(raw_url)
        broker = open_bench_broker(url, "bench")
        op = make(broker, "bench")
        try:
            op.prepare(n)
            raw_time = op_time = 0.0
            raw_done = op_done = 0
            per_chunk = max(1, n // chunks)
            for chunk in range(chunks):
                start = time.perf_counter()
                raw_done += raw.run(max(1, raw_n // chunks))
                raw_time += time.perf_counter() - start
                if profiler is not None:
                    profiler.enable()
                start = time.perf_counter()
                op_done += op.run(per_chunk)
                if chunk == chunks - 1:
                    op_done += op.finish()
                op_time += time.perf_counter() - start
                if profiler is not None:
                    profiler.disable()
            return raw_done / raw_time, op_done / op_time
        finally:
            raw.close()
            broker.close()


def one_run(engine: str, postgres_url: str, folder: Path, n: int, chunks: int,
            profile: str | None) -> dict[str, float]:
    """Every operation once, each on a fresh database and each against raw commits measured
    in chunks alternating with it (`raw_commit@<op>`)."""
    makers: dict[str, tuple[int, Callable[[SQLBroker, str], Operation]]] = {
        "publish": (n, Publish),
        "publish_batch": (n * 10, PublishBatch),
    }
    for batch in PULL_BATCHES:
        makers[f"pull_ack_{batch}"] = (n, lambda b, t, batch=batch: PullAck(b, t, batch))
    for batch in PULL_BATCHES:
        makers[f"pull_with_acks_{batch}"] = (
            n, lambda b, t, batch=batch: PullWithAcks(b, t, batch))
    rates = {}
    for name, (count, make) in makers.items():
        profiler = cProfile.Profile() if profile == name else None
        raw_rate, rate = measure(engine, postgres_url, folder, count, n, make, chunks,
                                 profiler)
        rates[f"raw_commit@{name}"], rates[name] = raw_rate, rate
        if profiler is not None:
            _print_profile(engine, name, profiler)
    rates["raw_commit"] = statistics.median(v for k, v in rates.items() if k.startswith("raw"))
    return rates


def _print_profile(engine: str, name: str, profiler: cProfile.Profile) -> None:
    print(f"\n-- profile: {engine} {name} (cumulative, top 25) --", file=sys.stderr)
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)


# -- reporting ------------------------------------------------------------------------------
def summarise(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median, min and max of each operation, and its median ratio to the raw commit rate
    of the same run."""
    summary = {}
    for op in OPERATIONS:
        rates = [run[op] for run in runs]
        ratios = [run[op] / run.get(f"raw_commit@{op}", run["raw_commit"]) for run in runs]
        summary[op] = {"median_per_s": statistics.median(rates), "min_per_s": min(rates),
                       "max_per_s": max(rates), "ratio_to_raw": statistics.median(ratios)}
    return summary


LABELS = {"raw_commit": "raw INSERT+COMMIT (reference)", "publish": "publish (1 per txn)",
          "publish_batch": f"publish_batch ({PUBLISH_BATCH} per txn)",
          **{f"pull_ack_{b}": f"pull({b}) + ack each" for b in PULL_BATCHES},
          **{f"pull_with_acks_{b}": f"pull({b}, acks=previous batch)" for b in PULL_BATCHES}}


def markdown(results: dict[str, dict[str, dict[str, float]]], runs: int) -> str:
    lines = [f"| engine | operation | median msg/s (of {runs}) | spread min-max | vs raw commit |",
             "| --- | --- | ---: | ---: | ---: |"]
    for engine, summary in results.items():
        for op in OPERATIONS:
            s = summary[op]
            lines.append(f"| {engine} | {LABELS[op]} | {s['median_per_s']:,.0f} | "
                         f"{s['min_per_s']:,.0f} - {s['max_per_s']:,.0f} | "
                         f"{s['ratio_to_raw']:.2f} |")
    return "\n".join(lines)


def environment(postgres_url: str, engines: list[str]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    if "postgres" in engines:
        with psycopg.connect(postgres_url) as conn:
            env["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
            env["postgres_synchronous_commit"] = conn.execute(
                "SHOW synchronous_commit").fetchone()[0]
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000,
                        help="messages per measurement (publish_batch uses ten times as many)")
    parser.add_argument("--chunks", type=int, default=10,
                        help="alternations of raw commits and the operation per measurement")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--profile", choices=OPERATIONS[1:], default=None,
                        help="cProfile this operation in the last run, printed to stderr")
    args = parser.parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if args.messages // args.chunks < max(PULL_BATCHES):
        parser.error(f"--messages / --chunks must be at least {max(PULL_BATCHES)} so a chunk "
                     "holds a whole pull batch")

    env = environment(args.postgres_url, engines)
    results: dict[str, dict[str, dict[str, float]]] = {}
    raw_runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="pillbox-bench-") as folder:
        for engine in engines:
            raw_runs[engine] = []
            for run in range(args.runs):
                profile = args.profile if run == args.runs - 1 else None
                rates = one_run(engine, args.postgres_url, Path(folder), args.messages,
                                args.chunks, profile)
                raw_runs[engine].append(rates)
                print(f"{engine} run {run + 1}/{args.runs}: "
                      + ", ".join(f"{k} {v:,.0f}/s" for k, v in rates.items()), file=sys.stderr,
                      flush=True)
            results[engine] = summarise(raw_runs[engine])

    env["load_average_at_end"] = os.getloadavg()
    print(markdown(results, args.runs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(
        {"command": "python bench/broker.py " + " ".join(argv or sys.argv[1:]),
         "messages_per_measurement": args.messages, "runs": args.runs, "environment": env,
         "summary": results, "raw_runs": raw_runs}, indent=2) + "\n")
    print(f"\nwrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
