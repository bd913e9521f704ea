"""`pillbox status`: per subscription and per work type, and an exit code for scripts."""

from __future__ import annotations

import functools
import sys
import time
from datetime import UTC, datetime
from typing import Any

import click
from rich.table import Table

from pillbox import defaults
from pillbox.app import App
from pillbox.broker import SQLBroker
from pillbox.cli._common import (
    EX_ATTENTION,
    age,
    ago,
    console,
    database_options,
    emit_json,
    guard,
    load,
    open_db,
)
from pillbox.cron import next_tick
from pillbox.messages import CrashRecord, SubscriptionStats

HOUR_S = 3600.0


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
@database_options
def status(as_json: bool, database: str | None, app_path: str | None) -> None:
    """Subscriptions (backlog, in flight, oldest unacked, rates, failures, crashes, dead,
    paused), work types (crashes in the last hour, the last one), and with --app the crons
    (schedule, catch-up and overlap policy, last and next tick).

    Exits 3 when something needs attention: dead messages or a crash loop in the last hour."""
    broker = open_db(database, app_path)
    now = time.time()
    subs = guard(lambda: broker.stats(now))
    crashes = guard(lambda: broker.crashes(since=now - HOUR_S, limit=10_000))
    work_types = _work_types(crashes)
    attention = _attention(subs, work_types)
    crons = _crons(load(app_path), broker, now) if app_path else []
    if as_json:
        emit_json({"subscriptions": [_sub_json(s) for s in subs], "work_types": work_types,
                   "crons": crons, "attention": attention, "defaults": _defaults()})
    else:
        _print(subs, work_types, attention, now)
        _print_crons(crons, now)
    sys.exit(EX_ATTENTION if attention else 0)


def _crons(app: App, broker: SQLBroker, now: float) -> list[dict[str, Any]]:
    """Each cron's schedule, policies, last claimed tick and next tick (needs --app)."""
    found = []
    for cron in app.crons.values():
        last = guard(functools.partial(broker.last_tick, cron.name))
        upcoming = next_tick(cron.schedule, cron.tz, datetime.fromtimestamp(now, UTC))
        found.append({"name": cron.name, "schedule": cron.schedule, "tz": cron.tz,
                      "catch_up": cron.catch_up, "overlap": cron.overlap, "last_tick": last,
                      "next_tick": upcoming.timestamp()})
    return found


def _print_crons(crons: list[dict[str, Any]], now: float) -> None:
    if not crons:
        return
    table = Table("cron", "schedule", "tz", "catch up", "overlap", "last tick", "next tick",
                  title="crons")
    for c in crons:
        table.add_row(c["name"], c["schedule"], c["tz"], c["catch_up"], str(c["overlap"]),
                      f"{ago(c['last_tick'], now)} ago" if c["last_tick"] else "never",
                      f"in {age(c['next_tick'] - now)}")
    console().print(table)


def _work_types(crashes: list[CrashRecord]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for crash in crashes:  # newest first
        entry = found.setdefault(crash.work_type, {"crashes_1h": 0, "last_crash": None})
        entry["crashes_1h"] += 1
        if entry["last_crash"] is None:
            entry["last_crash"] = {"id": crash.id, "at": crash.at, "cause": crash.cause,
                                   "summary": crash.summary}
    return found


def _attention(subs: list[SubscriptionStats], work_types: dict[str, dict[str, Any]]) -> list[str]:
    notes = [f"{s.name}: {s.dead_1h} message(s) went dead in the last hour"
             for s in subs if s.dead_1h]
    notes += [f"{wt}: {info['crashes_1h']} crashes in the last hour (crash loop)"
              for wt, info in work_types.items()
              if info["crashes_1h"] >= defaults.CRASH_LOOP_CRASHES]
    return notes


def _sub_json(s: SubscriptionStats) -> dict[str, Any]:
    return {"name": s.name, "topic": s.topic, "paused": s.paused, "backlog": s.backlog,
            "in_flight": s.in_flight, "oldest_unacked_age_s": s.oldest_unacked_age_s,
            "acked_per_min": round(s.acked_5m / 5, 2), "failed_1h": s.failed_1h,
            "crashed_1h": s.crashed_1h, "dead": s.dead, "dead_1h": s.dead_1h}


def _defaults() -> dict[str, Any]:
    return {name.lower(): getattr(defaults, name) for name in dir(defaults) if name.isupper()}


def _print(subs: list[SubscriptionStats], work_types: dict[str, dict[str, Any]],
           attention: list[str], now: float) -> None:
    out = console()
    table = Table("subscription", "topic", "backlog", "in flight", "oldest unacked",
                  "acked/min", "failed 1h", "crashed 1h", "dead", "paused", title="subscriptions")
    for s in subs:
        table.add_row(s.name, s.topic, str(s.backlog), str(s.in_flight),
                      age(s.oldest_unacked_age_s), f"{s.acked_5m / 5:.1f}", str(s.failed_1h),
                      str(s.crashed_1h), f"[red]{s.dead}[/red]" if s.dead else "0",
                      "[yellow]paused[/yellow]" if s.paused else "")
    out.print(table if subs else "no subscriptions registered yet")
    wt_table = Table("work type", "crashes 1h", "last crash", title="work types")
    for name, info in sorted(work_types.items()):
        last = info["last_crash"]
        wt_table.add_row(name, str(info["crashes_1h"]),
                         f"#{last['id']} {last['cause']} {ago(last['at'], now)} ago")
    out.print(wt_table if work_types else "no crashes in the last hour")
    for note in attention:
        out.print(f"[bold red]attention:[/bold red] {note}")
