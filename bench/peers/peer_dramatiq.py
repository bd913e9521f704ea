"""Dramatiq on Redis: `dramatiq peer_dramatiq --processes 2 --threads 1 --queues bench`."""

from __future__ import annotations

import os

import benchjobs
import dramatiq
from dramatiq.brokers.redis import RedisBroker

REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")

broker = RedisBroker(url=f"{REDIS}/13")
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=2, time_limit=5000)
def job(kind: str, i: int) -> None:
    benchjobs.run(kind, i)
