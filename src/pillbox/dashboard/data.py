"""What the dashboard and its JSON API show, read from the broker (blocking; call off the event
loop). Every function returns plain JSON-ready values; times are Unix seconds."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict
from typing import Any

from pillbox.broker import SQLBroker
from pillbox.messages import CrashRecord, Delivery, SubscriptionStats, is_id

TIMELINE_HOURS = 24
TIMELINE_CRASH_LIMIT = 20_000
RECENT_LIMIT = 50
DEAD_LIMIT = 200

#: Colours of crash causes in the timeline (anything else is grey).
CAUSE_COLOURS = {
    "segfault": "#c0392b", "abort": "#8e44ad", "exit": "#2980b9", "killed": "#7f8c8d",
    "memory": "#d35400", "timeout": "#f39c12", "stalled": "#16a085",
}
OTHER_COLOUR = "#95a5a6"

class NotFound(LookupError):
    """The thing asked for does not exist (the API answers 404)."""


def stats_json(stats: SubscriptionStats) -> dict[str, Any]:
    data = asdict(stats)
    data["acked_per_min_5m"] = round(stats.acked_5m / 5, 2)
    data["failed_per_min_5m"] = round(stats.failed_5m / 5, 2)
    data["crashed_per_min_5m"] = round(stats.crashed_5m / 5, 2)
    return data


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return asdict(delivery)


def crash_json(record: CrashRecord) -> dict[str, Any]:
    return asdict(record)


def subscriptions(broker: SQLBroker, now: float) -> list[dict[str, Any]]:
    return [stats_json(s) for s in broker.stats(now)]


def overview(broker: SQLBroker, now: float) -> dict[str, Any]:
    """Subscriptions, work types (from crash records), the crash timeline, web errors."""
    subs = subscriptions(broker, now)
    crashes = broker.crash_summaries(now - TIMELINE_HOURS * 3600, TIMELINE_CRASH_LIMIT)
    return {
        "now": now,
        "subscriptions": subs,
        "work_types": work_types(crashes, now),
        "timeline": timeline(crashes, now),
        "web_errors_1h": broker.event_count("web_error", now - 3600),
        "totals": {
            "backlog": sum(s["backlog"] for s in subs),
            "in_flight": sum(s["in_flight"] for s in subs),
            "dead": sum(s["dead"] for s in subs),
            "paused": sum(1 for s in subs if s["paused"]),
            "crashes_1h": sum(1 for c in crashes if c["at"] >= now - 3600),
            "crashes_24h": len(crashes),
        },
    }


def work_types(crashes: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """Per work type seen in crash summaries (newest first): crash counts, the latest crash."""
    rows: dict[str, dict[str, Any]] = {}
    for record in crashes:
        row = rows.setdefault(record["work_type"], {
            "work_type": record["work_type"], "crashes_1h": 0, "crashes_24h": 0,
            "last_crash_id": record["id"], "last_crash_at": record["at"],
            "last_cause": record["cause"], "last_summary": record["summary"],
            "causes": Counter()})
        row["crashes_24h"] += 1
        if record["at"] >= now - 3600:
            row["crashes_1h"] += 1
        row["causes"][record["cause"]] += 1
    out = []
    for row in sorted(rows.values(), key=lambda r: r["work_type"]):
        row["causes"] = dict(row["causes"].most_common())
        out.append(row)
    return out


def timeline(crashes: list[dict[str, Any]], now: float,
             hours: int = TIMELINE_HOURS) -> dict[str, Any]:
    """Crashes per hour over the last `hours`, by cause, with bar geometry for the SVG."""
    start = (int(now) // 3600 - hours + 1) * 3600
    buckets: list[dict[str, int]] = [defaultdict(int) for _ in range(hours)]
    for record in crashes:
        index = int((record["at"] - start) // 3600)
        if 0 <= index < hours:
            buckets[index][record["cause"]] += 1
    peak = max((sum(b.values()) for b in buckets), default=0)
    width, height, gap = 1200, 110, 4
    bar_w = width / hours
    bars = []
    for i, bucket in enumerate(buckets):
        y = float(height)
        for cause, count in sorted(bucket.items()):
            h = height * count / peak if peak else 0
            y -= h
            bars.append({"x": round(i * bar_w + gap / 2, 1), "y": round(y, 1),
                         "w": round(bar_w - gap, 1), "h": round(h, 1),
                         "colour": CAUSE_COLOURS.get(cause, OTHER_COLOUR),
                         "title": f"{count} {cause} crash{'es' if count != 1 else ''}",
                         "hour_start": start + i * 3600, "cause": cause, "count": count})
    causes = sorted({cause for b in buckets for cause in b})
    return {
        "start": start, "hours": hours, "peak": peak, "width": width, "height": height,
        "buckets": [{"start": start + i * 3600, "counts": dict(b)} for i, b in enumerate(buckets)],
        "bars": bars,
        "legend": [{"cause": c, "colour": CAUSE_COLOURS.get(c, OTHER_COLOUR)} for c in causes],
        "ticks": [{"x": round(i * bar_w, 1), "at": start + i * 3600}
                  for i in range(0, hours, 6)],
    }


def subscription(broker: SQLBroker, name: str, now: float) -> dict[str, Any]:
    """One subscription: its stats, recent failures and crashes, dead deliveries."""
    found = [s for s in broker.stats(now) if s.name == name]
    if not found:
        raise NotFound(f"no subscription {name!r}")
    return {
        "now": now,
        "subscription": stats_json(found[0]),
        "failures": broker.subscription_events(name, "failed", 0.0, RECENT_LIMIT),
        "crash_events": broker.subscription_events(name, "crashed", 0.0, RECENT_LIMIT),
        "dead": [delivery_json(d) for d in broker.dead(name, DEAD_LIMIT)],
    }


def dead(broker: SQLBroker, subscription: str | None, limit: int) -> list[dict[str, Any]]:
    return [delivery_json(d) for d in broker.dead(subscription, limit)]


def delivery(broker: SQLBroker, delivery_id: int) -> dict[str, Any]:
    found = broker.delivery(delivery_id) if is_id(delivery_id) else None
    if found is None:
        raise NotFound(f"no delivery #{delivery_id}")
    return delivery_json(found)


def crashes(broker: SQLBroker, since: float, until: float | None,
            limit: int) -> list[dict[str, Any]]:
    records = broker.crashes(since, limit)
    return [crash_json(r) for r in records if until is None or r.at < until]


def crash(broker: SQLBroker, crash_id: int) -> dict[str, Any]:
    """One crash record, with each delivery it had in flight resolved (payload, state)."""
    record = broker.crash(crash_id) if is_id(crash_id) else None
    if record is None:
        raise NotFound(f"no crash record #{crash_id}")
    data = crash_json(record)
    resolved = []
    for item in record.in_flight:
        entry: dict[str, Any] = {"item": item, "delivery": None}
        delivery_id = item.get("delivery_id") if isinstance(item, dict) else None
        if isinstance(delivery_id, int) and is_id(delivery_id):
            found = broker.delivery(delivery_id)
            entry["delivery"] = None if found is None else delivery_json(found)
        resolved.append(entry)
    data["in_flight_deliveries"] = resolved
    data["traceback_crashing"], data["traceback_others"] = split_traceback(record.traceback)
    return data


def split_traceback(text: str) -> tuple[str, str]:
    """(the crashing thread's block, everything after it): the record stores the crashing
    thread first, blocks separated by a blank line."""
    head, sep, rest = (text or "").strip("\n").partition("\n\n")
    return head, rest.strip("\n") if sep else ""
