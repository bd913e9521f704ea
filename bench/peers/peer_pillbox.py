"""pillbox: `pillbox run peer_pillbox:app --workers 2 --only worker`.

Two worker processes with one handler slot each (concurrency=1): two jobs run at once, in two
processes, like Celery's prefork pool of 2. The supervisor also runs its isolation lane.
"""

from __future__ import annotations

import os

import benchjobs

from pillbox import App, Message

app = App("bench", database=os.environ["BENCH_PILLBOX_DATABASE"])


# BENCH_PILLBOX_CONCURRENCY only for profile_pillbox.py's what-if runs; the benchmark uses 1
CONCURRENCY = int(os.environ.get("BENCH_PILLBOX_CONCURRENCY", "1"))


@app.subscribe("bench", name="bench", concurrency=CONCURRENCY, max_crashes=3, timeout=5)
def job(message: Message) -> None:
    benchjobs.run(message.payload["k"], message.payload["i"])
