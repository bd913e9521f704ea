"""Fault injection for `pillbox drill`: an org whose settings name a `drill_fault` makes the
welcome handler fail that way. Real apps do not need this; the drill uses it to replay the
failure shapes besides the native crash (which needs no hook: an org without a welcome
template triggers it through the real code path)."""

from __future__ import annotations

import os
import threading
import time


def inject(fault: str | None) -> None:
    if fault is None:
        return
    if fault == "abort":
        os.abort()
    if fault == "hang":
        time.sleep(3600)
    if fault == "memory-bomb":
        hoard = []
        for _ in range(80):  # up to 4 GiB in 50 MiB steps, kept referenced like a leak
            hoard.append(bytearray(50 * 2**20))
            time.sleep(0.02)
    if fault == "thread-exception":
        def library_callback() -> None:
            raise RuntimeError("client library callback failed on a malformed event")

        thread = threading.Thread(target=library_callback, name="pubsub-client-callback")
        thread.start()
        thread.join()
