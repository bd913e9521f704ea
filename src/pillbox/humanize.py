"""Times for people, shared by the CLI and the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime


def when(ts: float | None) -> str:
    """A Unix time as `YYYY-MM-DD HH:MM:SS` (UTC), or "-"."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | None) -> str:
    """A duration as 42s, 17m, 3.5h or 2.1d, or "-"."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
