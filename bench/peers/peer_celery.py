"""Celery on Redis: `celery -A peer_celery worker -P prefork -c 2 -Q bench ...`."""

from __future__ import annotations

import os

import benchjobs
from celery import Celery

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")

app = Celery("peer_celery", broker=f"{REDIS}/10", backend=f"{REDIS}/11")
app.conf.update(
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
)


@app.task(name="job", ignore_result=True, time_limit=5)
def job(kind: str, i: int) -> None:
    """No-op and good jobs: no result stored (the usual setting for fire-and-forget work)."""
    benchjobs.run(kind, i)


@app.task(name="bad", time_limit=5)
def bad(kind: str, i: int) -> None:
    """Poison and hang jobs: the result backend keeps their fate, so the harness can read it."""
    benchjobs.run(kind, i)
