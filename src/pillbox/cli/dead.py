"""`pillbox dead list|show|replay|drop`: quarantined and dead-lettered deliveries."""

from __future__ import annotations

import functools
import time

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
)
from pillbox.messages import Delivery


@click.group()
def dead() -> None:
    """Dead deliveries: poison pills and exhausted retries."""


@dead.command("list")
@click.argument("subscription", required=False)
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
@database_options
def list_(subscription: str | None, limit: int, as_json: bool, database: str | None,
          app_path: str | None) -> None:
    """Dead deliveries, newest first (of one SUBSCRIPTION, or all)."""
    broker = open_db(database, app_path)
    rows = guard(lambda: broker.dead(subscription, limit))
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "subscription", "message id", "reason", "attempts", "crashes", "died")
    for d in rows:
        table.add_row(str(d.id), d.subscription, d.message_id, d.dead_reason or "-",
                      str(d.attempt), str(d.crashes), ago(d.finished_at) + " ago")
    console().print(table if rows else "no dead deliveries")


@dead.command()
@click.argument("delivery_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
@database_options
def show(delivery_id: int, as_json: bool, database: str | None, app_path: str | None) -> None:
    """One delivery: payload, reason, last error, crash records."""
    broker = open_db(database, app_path)
    delivery = guard(lambda: broker.delivery(delivery_id)) if is_id(delivery_id) else None
    if delivery is None:
        raise click.ClickException(f"no delivery #{delivery_id}")
    if as_json:
        emit_json(delivery)
        return
    _print(delivery)


def _print(d: Delivery) -> None:
    out = console()
    out.print(f"[bold]delivery #{d.id}[/bold] of message {d.message_id} ({d.topic} → "
              f"{d.subscription})", markup=True)
    out.print(f"state: {d.state}  reason: {d.dead_reason or '-'}  attempts: {d.attempt}  "
              f"crashes: {d.crashes}  suspect: {d.suspect}", markup=False)
    out.print(f"payload: {d.payload!r}", markup=False, soft_wrap=True)
    if d.attributes:
        out.print(f"attributes: {d.attributes!r}", markup=False)
    if d.crash_ids:
        out.print("crash records: " + ", ".join(f"#{i}" for i in d.crash_ids)
                  + f"  (pillbox crashes show {d.crash_ids[-1]})", markup=False)
    if d.last_error:
        out.print("[bold]last error:[/bold]")
        click.echo(d.last_error)


@dead.command()
@click.argument("delivery_ids", type=int, nargs=-1, required=True)
@database_options
def replay(delivery_ids: tuple[int, ...], database: str | None, app_path: str | None) -> None:
    """Deliver dead deliveries again (fresh attempt and crash counts)."""
    broker = open_db(database, app_path)
    now = time.time()
    ids = _unique(delivery_ids)
    missing = [i for i in ids
               if not (is_id(i) and guard(functools.partial(broker.replay, i, now)))]
    click.echo(f"replayed {len(ids) - len(missing)} delivery(ies)")
    _report_missing(missing)


@dead.command()
@click.argument("delivery_ids", type=int, nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@database_options
def drop(delivery_ids: tuple[int, ...], yes: bool, database: str | None,
         app_path: str | None) -> None:
    """Delete dead deliveries for good (asks first, for the ones that are dead)."""
    broker = open_db(database, app_path)
    ids = _unique(delivery_ids)
    dead_now = [i for i in ids if is_id(i) and _is_dead(broker, i)]
    missing = [i for i in ids if i not in dead_now]
    if dead_now and not yes:
        if missing:
            click.echo("not dead (or unknown), left alone: " + ", ".join(map(str, missing)),
                       err=True)
        click.confirm(f"delete {len(dead_now)} dead delivery(ies) for good?", abort=True)
    # one may have been replayed (or dropped) since it was counted: drop says so
    gone = [i for i in dead_now if not guard(functools.partial(broker.drop, i))]
    click.echo(f"dropped {len(dead_now) - len(gone)} delivery(ies)")
    _report_missing([i for i in ids if i in missing or i in gone])


def _unique(ids: tuple[int, ...]) -> list[int]:
    """The ids in the order given, each once (`replay 7 7` replays delivery 7 once)."""
    return list(dict.fromkeys(ids))


def _is_dead(broker: SQLBroker, delivery_id: int) -> bool:
    found = guard(lambda: broker.delivery(delivery_id))
    return found is not None and found.state == "dead"


def _report_missing(missing: list[int]) -> None:
    if missing:
        raise click.ClickException("not dead (or unknown): " + ", ".join(map(str, missing)))
