"""Huey on SQLite: `huey_consumer peer_huey.huey -w 2 -k process`.

Process workers, because only they enforce a task timeout (SIGALRM).
"""

from __future__ import annotations

import os

import benchjobs
from huey import SqliteHuey

huey = SqliteHuey("bench", filename=os.path.join(os.environ["BENCH_SCRATCH"], "huey.db"))


@huey.task(retries=2, retry_delay=0, timeout=5)
def job(kind: str, i: int) -> None:
    benchjobs.run(kind, i)
