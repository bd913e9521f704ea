"""One adapter per system under test: how to reset its storage, start its worker, enqueue a
job, and read back what became of one job from the tool's own records.

Every system runs the same job function (`benchjobs.run`) with "concurrency 2":

- Celery: prefork pool of 2 processes; RQ: a worker-pool of 2 workers (each forks a work-horse
  per job); Dramatiq: 2 processes x 1 thread; Huey: 2 worker processes; Procrastinate: one
  process, 2 concurrent jobs (sync jobs run in threads); pillbox: 2 worker processes with
  concurrency=1 each (plus its isolation lane, which only runs suspects).
- Failure policy where the tool has one: 3 attempts in all (retries=2 / max_crashes=3) and a
  5 s per-job time limit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any

import psutil
import psycopg
import redis

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.dirname(sys.executable)
REDIS_URL = os.environ.setdefault("BENCH_REDIS", "redis://127.0.0.1:6379")
PG_SERVER = os.environ.setdefault("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
PG_PILLBOX = f"{PG_SERVER}/bench_pillbox"
PG_PROCRASTINATE = f"{PG_SERVER}/bench_procrastinate"
os.environ.setdefault("BENCH_PROCRASTINATE_DSN", PG_PROCRASTINATE)

POISON_FRAME = "poison_body"
HANG_FRAME = "hang_body"


def bin_(name: str) -> str:
    return os.path.join(VENV_BIN, name)


@dataclass
class Fate:
    """What the tool itself says became of one job."""

    state: str  # the tool's own word for it
    verdict: str  # one of: quarantined, failed (kept), failed (result only), dropped,
    #                stuck, retrying, pending, done
    detail: str = ""
    evidence: str = ""  # where the tool kept an error for the job, if anywhere
    job_traceback_kept: bool = False  # the job's own Python frame is in that record
    at: float | None = None  # when the tool reached this state, where it records that

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _tb_has(text: str | None, frame: str) -> bool:
    return bool(text) and frame in str(text)


class System:
    key = ""
    label = ""
    broker = ""
    config = ""
    bulk_api: str | None = None
    time_limit = ""
    retries = ""

    def __init__(self, scratch: str) -> None:
        self.scratch = scratch

    # -- lifecycle -------------------------------------------------------------------------
    def reset(self) -> None:
        raise NotImplementedError

    def open(self) -> None:
        """Connect the client side (after reset)."""

    def close(self) -> None:
        """Disconnect the client side."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def pg_database(self) -> str:
        """The PostgreSQL database the system keeps its jobs in, if any."""
        return ""

    def after_enqueue(self) -> None:
        """After a bulk load into a fresh schema, before processing: on PostgreSQL, ANALYZE,
        as autovacuum would have done on a long-running system. Without it Procrastinate's
        job fetch ran ~20x slower on the 20,000 fresh rows (a plan without statistics)."""
        db = self.pg_database()
        if db:
            with psycopg.connect(f"{PG_SERVER}/{db}", autocommit=True) as conn:
                conn.execute("ANALYZE")

    # -- client ----------------------------------------------------------------------------
    def enqueue(self, kind: str, i: int) -> str:
        raise NotImplementedError

    def enqueue_bulk(self, kind: str, ids: list[int]) -> None:
        raise NotImplementedError

    def fate(self, job_id: str, frame: str) -> Fate:
        raise NotImplementedError

    # -- recovery --------------------------------------------------------------------------
    def kill_targets(self, root: psutil.Process | None, seen_pids: set[int],
                     seen_ppids: set[int]) -> list[psutil.Process]:
        """The processes that run jobs (all of them, so no surviving sibling hides the
        recovery): by default the pids that wrote job lines and are still alive."""
        return _alive(seen_pids)


def _alive(pids: set[int]) -> list[psutil.Process]:
    procs = []
    for pid in sorted(pids):
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                procs.append(p)
    return procs


def _flush(db: int) -> None:
    r = redis.Redis.from_url(f"{REDIS_URL}/{db}")
    r.flushdb()
    r.close()


def _reset_pg_database(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


def ensure_pg_databases() -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        for name in ("bench_pillbox", "bench_procrastinate"):
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')


# -- Celery ------------------------------------------------------------------------------------
class Celery(System):
    key = "celery"
    label = "Celery (Redis)"
    broker = "Redis"
    config = ("`celery -A peer_celery worker -P prefork -c 2 -Q bench --without-gossip "
              "--without-mingle --without-heartbeat`; default acks (early), result backend "
              "Redis db 11 for the poison/hang task only")
    time_limit = "`time_limit=5` (hard)"
    retries = "none for a lost worker (Celery has no retry count for it)"

    def reset(self) -> None:
        _flush(10)
        _flush(11)

    def open(self) -> None:
        import peer_celery

        self.mod = peer_celery

    def argv(self) -> list[str]:
        return [bin_("celery"), "-A", "peer_celery", "worker", "-P", "prefork", "-c", "2",
                "-Q", "bench", "--without-gossip", "--without-mingle", "--without-heartbeat"]

    def enqueue(self, kind: str, i: int) -> str:
        task = self.mod.job if kind in ("n", "g") else self.mod.bad
        return str(task.delay(kind, i).id)

    def fate(self, job_id: str, frame: str) -> Fate:
        from celery.result import AsyncResult

        r = AsyncResult(job_id, app=self.mod.app)
        state = r.state
        tb = r.traceback
        result = repr(r.result)[:200] if r.result is not None else ""
        if state == "FAILURE":
            return Fate(state, "failed (result only)",
                        f"{result}; the message was acked and is gone, not retried",
                        "result backend: exception type and message (pool-level traceback)",
                        _tb_has(tb, frame))
        if state in ("PENDING", "RECEIVED", "STARTED"):
            return Fate(state, "stuck", result)
        return Fate(state, "done" if state == "SUCCESS" else state.lower(), result)


# -- RQ ----------------------------------------------------------------------------------------
class RQ(System):
    key = "rq"
    label = "RQ (Redis)"
    broker = "Redis"
    config = ("`rq worker-pool -u redis://127.0.0.1:6379/12 -n 2 bench`: 2 workers, each forks "
              "a work-horse per job (RQ's default Worker)")
    bulk_api = "`Queue.enqueue_many` (one pipeline)"
    time_limit = "`job_timeout=5`"
    retries = "`retry=Retry(max=2)`"

    def reset(self) -> None:
        _flush(12)

    def open(self) -> None:
        import benchjobs
        import peer_rq
        from rq import Queue, Retry

        self.conn = redis.Redis.from_url(peer_rq.REDIS_URL)
        self.q = Queue("bench", connection=self.conn)
        self.func = benchjobs.run
        self.retry = Retry

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def argv(self) -> list[str]:
        return [bin_("rq"), "worker-pool", "-u", f"{REDIS_URL}/12", "-n", "2", "bench"]

    def enqueue(self, kind: str, i: int) -> str:
        job = self.q.enqueue(self.func, kind, i, retry=self.retry(max=2), job_timeout=5)
        return str(job.id)

    def enqueue_bulk(self, kind: str, ids: list[int]) -> None:
        from rq import Queue

        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            self.q.enqueue_many([Queue.prepare_data(self.func, (kind, i), timeout=5,
                                                    retry=self.retry(max=2)) for i in chunk])

    def fate(self, job_id: str, frame: str) -> Fate:
        from rq.job import Job
        from rq.registry import FailedJobRegistry, StartedJobRegistry

        try:
            job = Job.fetch(job_id, connection=self.conn)
        except Exception as exc:
            return Fate("missing", "dropped", repr(exc))
        status = str(job.get_status())
        exc_text = ""
        with contextlib.suppress(Exception):
            latest = job.latest_result()
            if latest is not None:
                exc_text = latest.exc_string or ""
        in_failed = job_id in FailedJobRegistry(queue=self.q)
        in_started = job_id in StartedJobRegistry(queue=self.q)
        first = exc_text.strip().splitlines()[-1][:160] if exc_text.strip() else ""
        retries_left = getattr(job, "retries_left", None)
        detail = f"status {status}, retries_left={retries_left}; {first}"
        if in_failed:
            return Fate(status, "failed (kept)", detail,
                        "FailedJobRegistry (job kept, `rq requeue` can replay it)",
                        _tb_has(exc_text, frame))
        if in_started:
            return Fate(status, "stuck", detail + " (StartedJobRegistry)")
        if "queued" in status or "scheduled" in status:
            return Fate(status, "retrying", detail)
        return Fate(status, status.split(".")[-1].lower(), detail)

    def kill_targets(self, root: psutil.Process | None, seen_pids: set[int],
                     seen_ppids: set[int]) -> list[psutil.Process]:
        # a job line comes from a short-lived work-horse; its parent is the worker
        return _alive(seen_ppids - ({root.pid} if root else set()))


# -- Dramatiq ----------------------------------------------------------------------------------
class Dramatiq(System):
    key = "dramatiq"
    label = "Dramatiq (Redis)"
    broker = "Redis"
    config = "`dramatiq peer_dramatiq --processes 2 --threads 1 --queues bench`"
    time_limit = "`time_limit=5000` (ms)"
    retries = "`max_retries=2`"

    def reset(self) -> None:
        _flush(13)

    def open(self) -> None:
        import peer_dramatiq

        self.mod = peer_dramatiq
        self.r = redis.Redis.from_url(f"{REDIS_URL}/13")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.r.close()

    def argv(self) -> list[str]:
        return [bin_("dramatiq"), "peer_dramatiq", "--processes", "2", "--threads", "1",
                "--queues", "bench"]

    def enqueue(self, kind: str, i: int) -> str:
        message = self.mod.job.send(kind, i)
        # the Redis broker keys messages by its own id, kept in the options
        return str(message.options.get("redis_message_id", message.message_id))

    def fate(self, job_id: str, frame: str) -> Fate:
        r = self.r
        in_acks = [k.decode() for k in r.scan_iter("dramatiq:__acks__.*")
                   if r.sismember(k, job_id)]
        queued = job_id.encode() in r.lrange("dramatiq:bench", 0, -1)
        stored = r.hexists("dramatiq:bench.msgs", job_id)
        dead = r.hexists("dramatiq:bench.XQ.msgs", job_id)
        if dead:
            raw = r.hget("dramatiq:bench.XQ.msgs", job_id) or b""
            return Fate("dead-lettered", "failed (kept)", "in dramatiq:bench.XQ",
                        "dead-letter queue (message only)", _tb_has(raw.decode(), frame))
        if in_acks:
            return Fate("unacked", "stuck",
                        f"in {len(in_acks)} worker ack set(s) ({in_acks[0].split('.')[1][:8]}…);"
                        " redelivered only after the dead worker's heartbeat expires (60 s) and"
                        " a random maintenance pass")
        if queued:
            return Fate("queued", "retrying", "back in the queue")
        if stored:
            return Fate("stored", "pending", "message stored, not queued")
        return Fate("gone", "dropped", "no trace in Redis")


# -- Huey --------------------------------------------------------------------------------------
class Huey(System):
    key = "huey"
    label = "Huey (SQLite)"
    broker = "SQLite"
    config = ("`huey_consumer peer_huey.huey -w 2 -k process`; `SqliteHuey` (WAL, "
              "synchronous=FULL); default health check every 10 s")
    time_limit = "`timeout=5` (process workers only)"
    retries = "`retries=2, retry_delay=0`"

    def reset(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.scratch, "huey.db" + suffix))

    def open(self) -> None:
        import peer_huey

        self.mod = peer_huey
        self.mod.huey.storage.close()  # reopen on the fresh file, with its tables
        self.mod.huey.storage.initialize_schema()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.mod.huey.storage.close()

    def argv(self) -> list[str]:
        return [bin_("huey_consumer"), "peer_huey.huey", "-w", "2", "-k", "process"]

    def enqueue(self, kind: str, i: int) -> str:
        return str(self.mod.job(kind, i).id)

    def fate(self, job_id: str, frame: str) -> Fate:
        from huey.exceptions import TaskException

        h = self.mod.huey
        pending = any(t.id == job_id for t in h.pending())
        scheduled = any(t.id == job_id for t in h.scheduled())
        try:
            value = h.result(job_id, preserve=True)
        except TaskException as exc:
            meta = exc.metadata or {}
            tb = meta.get("traceback", "")
            return Fate("error stored", "failed (result only)",
                        f"{meta.get('error', '')[:160]} (retries left {meta.get('retries')})",
                        "result store: the error and its traceback", _tb_has(tb, frame))
        if pending:
            return Fate("pending", "retrying", "back in the queue")
        if scheduled:
            return Fate("scheduled", "retrying", "scheduled for a retry")
        if value is not None:
            return Fate("result", "done", repr(value)[:80])
        return Fate("gone", "dropped",
                    "no result, no error, not pending, not scheduled (deleted at dequeue)")


# -- Procrastinate -----------------------------------------------------------------------------
class Procrastinate(System):
    key = "procrastinate"
    label = "Procrastinate (PostgreSQL)"
    broker = "PostgreSQL"
    config = ("`procrastinate --app=peer_procrastinate.app worker -q bench -c 2`; "
              "PsycopgConnector, LISTEN/NOTIFY on")
    bulk_api = "`Task.batch_defer` (one statement)"
    time_limit = "none (Procrastinate has no per-job time limit)"
    retries = "`retry=2`"

    def reset(self) -> None:
        _reset_pg_database(PG_PROCRASTINATE)
        import peer_procrastinate

        with peer_procrastinate.app.open():
            peer_procrastinate.app.schema_manager.apply_schema()

    def open(self) -> None:
        import peer_procrastinate

        self.mod = peer_procrastinate
        self._ctx = self.mod.app.open()
        self._ctx.__enter__()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ctx.__exit__(None, None, None)

    def pg_database(self) -> str:
        return "bench_procrastinate"

    def argv(self) -> list[str]:
        return [bin_("procrastinate"), "--app=peer_procrastinate.app", "worker", "-q", "bench",
                "-c", "2"]

    def enqueue(self, kind: str, i: int) -> str:
        return str(self.mod.job.defer(kind=kind, i=i))

    def enqueue_bulk(self, kind: str, ids: list[int]) -> None:
        for start in range(0, len(ids), 1000):
            self.mod.job.batch_defer(*[{"kind": kind, "i": i} for i in ids[start:start + 1000]])

    def fate(self, job_id: str, frame: str) -> Fate:
        with psycopg.connect(PG_PROCRASTINATE) as conn:
            row = conn.execute("SELECT status, attempts FROM procrastinate_jobs WHERE id = %s",
                               (int(job_id),)).fetchone()
            events = [r[0] for r in conn.execute(
                "SELECT type FROM procrastinate_events WHERE job_id = %s ORDER BY id",
                (int(job_id),)).fetchall()]
        if row is None:
            return Fate("missing", "dropped", "no row")
        status, attempts = row
        detail = f"status {status}, attempts {attempts}; events {', '.join(events)}"
        if status == "doing":
            return Fate(status, "stuck", detail + " (nothing moves it without a stalled-jobs"
                        " task)")
        if status == "failed":
            return Fate(status, "failed (kept)", detail, "jobs table (status only, no error)")
        if status == "todo":
            return Fate(status, "retrying", detail)
        return Fate(status, status, detail)


# -- pillbox -----------------------------------------------------------------------------------
class Pillbox(System):
    key = "pillbox-sqlite"
    label = "pillbox (SQLite)"
    broker = "SQLite"
    bulk_api = "`broker.publish_batch` (one transaction)"
    time_limit = "`timeout=5` (the supervisor ends the process)"
    retries = "`max_crashes=3` (crashes), default `max_attempts=5` (exceptions)"

    def __init__(self, scratch: str, database: str | None = None) -> None:
        super().__init__(scratch)
        self.database = database or f"sqlite:///{os.path.join(scratch, 'pillbox.db')}"
        self.config = ("`pillbox run peer_pillbox:app --workers 2 --only worker "
                       "--shutdown-grace 5`; `concurrency=1` per process")
        self.app: Any = None

    def reset(self) -> None:
        self._drop_app()
        if self.database.startswith("sqlite"):
            path = self.database[len("sqlite:///"):]
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path + suffix)
        else:
            _reset_pg_database(self.database)

    def _drop_app(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None

    def open(self) -> None:
        os.environ["BENCH_PILLBOX_DATABASE"] = self.database
        import peer_pillbox

        peer_pillbox.app.database = self.database
        self.app = peer_pillbox.app
        self.app.close()
        self.app.broker  # noqa: B018 - create the schema and register the subscription

    def close(self) -> None:
        self._drop_app()

    def env(self) -> dict[str, str]:
        return {"BENCH_PILLBOX_DATABASE": self.database}

    def argv(self) -> list[str]:
        return [bin_("pillbox"), "run", "peer_pillbox:app", "--workers", "2", "--only",
                "worker", "--shutdown-grace", "5"]

    def enqueue(self, kind: str, i: int) -> str:
        return str(self.app.publish("bench", {"k": kind, "i": i}))

    def enqueue_bulk(self, kind: str, ids: list[int]) -> None:
        broker = self.app.broker
        for start in range(0, len(ids), 1000):
            broker.publish_batch("bench", [json.dumps({"k": kind, "i": i})
                                           for i in ids[start:start + 1000]], time.time())

    def fate(self, job_id: str, frame: str) -> Fate:
        broker = self.app.broker
        found = broker.deliveries(message_id=job_id)
        if not found:
            return Fate("missing", "dropped", "no delivery")
        d = broker.delivery(found[0].id)
        crashes = [c for c in (broker.crash(cid) for cid in d.crash_ids) if c]
        causes = sorted({c.cause for c in crashes})
        detail = (f"state {d.state}, crashes {d.crashes}, attempt {d.attempt}"
                  + (f", reason {d.dead_reason!r}" if d.dead_reason else "")
                  + f", {len(crashes)} crash record(s) (cause {', '.join(causes) or '-'})")
        kept = any(_tb_has(c.traceback, frame) for c in crashes)
        if d.state == "dead":
            return Fate(d.state, "quarantined", detail,
                        "crash records linked to the dead delivery (`pillbox crashes show`);"
                        " replayable with `pillbox replay`", kept, d.finished_at)
        if d.state == "leased":
            return Fate(d.state, "stuck", detail, "", kept)
        if d.state == "available":
            return Fate(d.state, "retrying", detail, "", kept)
        return Fate(d.state, "done" if d.state == "acked" else d.state, detail, "", kept)


class PillboxPostgres(Pillbox):
    key = "pillbox-postgres"
    label = "pillbox (PostgreSQL)"
    broker = "PostgreSQL"

    def __init__(self, scratch: str) -> None:
        super().__init__(scratch, PG_PILLBOX)

    def pg_database(self) -> str:
        return "bench_pillbox"


ALL = [Celery, RQ, Dramatiq, Huey, Procrastinate, Pillbox, PillboxPostgres]


def make(keys: list[str] | None, scratch: str) -> list[System]:
    systems = [cls(scratch) for cls in ALL]
    if keys:
        unknown = set(keys) - {s.key for s in systems}
        if unknown:
            raise SystemExit(f"unknown system(s): {', '.join(sorted(unknown))}")
        systems = [s for s in systems if s.key in keys]
    return systems


def clean_scratch(scratch: str) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch, exist_ok=True)
