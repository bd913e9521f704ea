"""The app the runtime benchmarks run: one no-op subscription."""

from __future__ import annotations

import os

from pillbox import App, Message

app = App("bench", database=os.environ.get("BENCH_DATABASE"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))


@app.subscribe("noop", name="noop", concurrency=CONCURRENCY)
def noop(message: Message) -> None:
    """Does nothing: the benchmark measures pillbox, not the handler."""
