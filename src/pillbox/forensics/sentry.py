"""Optional: forward crash records (from the supervisor, which survives) and handler
exceptions (from workers) to Sentry, when sentry-sdk is installed and SENTRY_DSN is set."""

from __future__ import annotations

import logging
import os
from typing import Any

from pillbox.messages import CrashRecord

log = logging.getLogger("pillbox.sentry")
_ready: bool | None = None


def enabled() -> bool:
    """Initialise Sentry once per process; False when not configured or not installed."""
    global _ready
    if _ready is None:
        _ready = False
        if os.environ.get("SENTRY_DSN"):
            try:
                import sentry_sdk
            except ImportError:
                log.warning("SENTRY_DSN is set but sentry-sdk is not installed "
                            "(pip install 'pillbox[sentry]'); not forwarding crashes")
            else:
                sentry_sdk.init(dsn=os.environ["SENTRY_DSN"], default_integrations=False)
                _ready = True
    return _ready


def report_crash(record: CrashRecord, crash_id: int) -> None:
    if not enabled():
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.set_tag("pillbox.cause", record.cause)
        scope.set_tag("pillbox.work_type", record.work_type)
        scope.set_context("pillbox_crash", {"crash_id": crash_id, "pid": record.pid,
                                            "in_flight": record.in_flight,
                                            "traceback": record.traceback[:8000],
                                            "log_tail": record.log_tail[-4000:]})
        sentry_sdk.capture_message(f"pillbox crash #{crash_id}: {record.summary}", level="fatal")
    sentry_sdk.flush(timeout=2)


def report_exception(exc: BaseException, context: dict[str, Any]) -> None:
    if not enabled():
        return
    import sentry_sdk

    with sentry_sdk.new_scope() as scope:
        scope.set_context("pillbox_delivery", context)
        sentry_sdk.capture_exception(exc)
