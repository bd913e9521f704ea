"""Stores errors that happen outside the ack path (library threads, unraisable exceptions,
asyncio callbacks, web 500s) as events, with the delivery or request in context."""

from __future__ import annotations

import logging
import time
from typing import Any

from pillbox.broker import SQLBroker

log = logging.getLogger("pillbox.errors")


def record_error(broker: SQLBroker, kind: str, detail: str, context: dict[str, Any] | None) -> None:
    context = context or {}
    where = ", ".join(f"{k}={v}" for k, v in context.items()) or "no delivery in context"
    first = detail.strip().splitlines()[-1] if detail.strip() else kind
    log.error("%s (%s): %s", kind, where, first[:300])
    try:
        broker.record_event(kind, detail, time.time(), subscription=context.get("subscription"),
                            delivery_id=context.get("delivery_id"),
                            message_id=context.get("message_id"))
    except Exception as exc:  # the error must not take the process down with it
        log.error("could not store %s: %s", kind, exc)
