"""Procrastinate on PostgreSQL: `procrastinate --app=peer_procrastinate.app worker -q bench -c 2`.

Procrastinate has no per-job time limit; sync tasks run in threads of the worker process.
"""

from __future__ import annotations

import os

import benchjobs
from procrastinate import App, PsycopgConnector

app = App(connector=PsycopgConnector(
    conninfo=os.environ.get("BENCH_PROCRASTINATE_DSN",
                            "postgresql://postgres@127.0.0.1:5432/bench_procrastinate")))


@app.task(name="job", queue="bench", retry=2)
def job(kind: str, i: int) -> None:
    benchjobs.run(kind, i)
