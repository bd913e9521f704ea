"""The app the poison-mix benchmark runs: one subscription whose handler does about a
millisecond of work, and segfaults on messages marked poison."""

from __future__ import annotations

import ctypes
import os
import time

from pillbox import App, Message

app = App("poisonmix", database=os.environ.get("BENCH_DATABASE"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))


@app.subscribe("work", name="work", concurrency=CONCURRENCY)
def work(message: Message) -> None:
    if message.payload.get("poison"):
        ctypes.string_at(0)  # a real segfault, as in the original incident
    time.sleep(0.001)
