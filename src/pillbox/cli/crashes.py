"""`pillbox crashes [--since] [show ID]`: what died, why, and what it was doing."""

from __future__ import annotations

from dataclasses import asdict

import click
from rich.table import Table

from pillbox.broker import SQLBroker
from pillbox.cli._common import (
    ago,
    console,
    database_options,
    emit_json,
    guard,
    is_id,
    open_db,
    parse_time,
    when,
)
from pillbox.forensics.faultlog import top_frame
from pillbox.messages import CrashRecord
from pillbox.supervisor.postmortem import LIBRARY_PATHS


@click.group(invoke_without_command=True)
@click.option("--since", default=None, help="Only crashes after this time (ISO) or ago (1h)")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="Show at most this many (the newest)")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
@database_options
@click.pass_context
def crashes(ctx: click.Context, since: str | None, limit: int, as_json: bool,
            database: str | None, app_path: str | None) -> None:
    """List crash records, newest first; says so when there are more than --limit.

    --json prints {"crashes": [...], "total": N, "truncated": true|false}."""
    ctx.obj = (database, app_path)
    if ctx.invoked_subcommand is not None:
        return
    broker = open_db(database, app_path)
    cutoff = parse_time(since) if since else 0.0
    records = guard(lambda: broker.crashes(cutoff, limit))
    total = _total(broker, cutoff, len(records), limit)
    if as_json:
        emit_json({"crashes": [asdict(r) for r in records], "total": total,
                   "truncated": total > len(records)})
        return
    table = Table("id", "when (UTC)", "ago", "process", "cause", "in flight", "where")
    for record in records:
        table.add_row(str(record.id), when(record.at), ago(record.at),
                      f"{record.work_type} {record.pid}", record.cause,
                      in_flight_label(record), _short(top_frame(record.traceback, LIBRARY_PATHS)))
    console().print(table if records else "no crashes recorded")
    if total > len(records):
        more = f"more than {total - 1}" if total > max(COUNT_CAP, limit) else str(total)
        console().print(f"showing the newest {len(records)} of {more} (use --limit)")


#: Counting crash records past the shown ones stops here ("more than ...").
COUNT_CAP = 100_000


def _total(broker: SQLBroker, since: float, shown: int, limit: int) -> int:
    """How many crash records match: counted (light rows, no tracebacks) only when the list
    was cut at `limit`, and only up to max(COUNT_CAP, limit) + 1."""
    if shown < limit:
        return shown
    cap = max(COUNT_CAP, limit) + 1
    return max(shown, len(guard(lambda: broker.crash_summaries(since, cap))))


@crashes.command("show")
@click.argument("crash_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
@database_options
@click.pass_context
def show(ctx: click.Context, crash_id: int, as_json: bool, database: str | None,
         app_path: str | None) -> None:
    """One crash record: cause, what was in flight, the crashing traceback first."""
    parent_db, parent_app = ctx.obj or (None, None)
    broker = open_db(database or parent_db, app_path or parent_app)
    record = guard(lambda: broker.crash(crash_id)) if is_id(crash_id) else None
    if record is None:
        raise click.ClickException(f"no crash record #{crash_id}")
    if as_json:
        emit_json(record)
        return
    print_crash(record, broker)


def in_flight_label(record: CrashRecord) -> str:
    labels = [f"{item.get('subscription', '?')} #{item['delivery_id']}" if "delivery_id" in item
              else str(item.get("request", "?")) for item in record.in_flight]
    if len(labels) > 2:
        labels = [*labels[:2], f"+{len(labels) - 2}"]
    return ", ".join(labels) or "-"


def _short(frame: str) -> str:
    path, _, rest = frame.partition(":")
    return f"{path.rsplit('/', 1)[-1]}:{rest}" if frame else "-"


def print_crash(record: CrashRecord, broker: SQLBroker) -> None:
    out = console()
    out.print(f"[bold]crash #{record.id}[/bold]  {when(record.at)} UTC ({ago(record.at)} ago)")
    out.print(f"cause:     [bold red]{record.cause}[/bold red]")
    status = (f"signal {record.signal}" if record.signal is not None
              else f"exit code {record.exit_code}")
    out.print(f"process:   {record.work_type} pid {record.pid}, {status}, peak RSS "
              f"{record.peak_rss_bytes / 2**20:.0f} MiB")
    out.print(f"summary:   {record.summary}", markup=False, soft_wrap=True)
    out.print("in flight:" if record.in_flight else "in flight: nothing")
    for item in record.in_flight:
        out.print("  " + ", ".join(f"{k}={v}" for k, v in item.items()), markup=False)
        delivery_id = item.get("delivery_id")
        if delivery_id is not None and str(delivery_id).isdigit() and is_id(int(delivery_id)):
            delivery = broker.delivery(int(delivery_id))
            if delivery is not None:
                out.print(f"    state={delivery.state} crashes={delivery.crashes} "
                          f"payload={delivery.payload!r}", markup=False)
    out.print("[bold]traceback (crashing thread first):[/bold]")
    click.echo(record.traceback or "(no faulthandler output was captured)")
    if record.log_tail:
        out.print("[bold]last log lines:[/bold]")
        click.echo(record.log_tail)
