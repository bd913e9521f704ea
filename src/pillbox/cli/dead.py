"""`pillbox dead list|show|replay|drop`: quarantined and dead-lettered deliveries."""

from __future__ import annotations

import functools
import time

import click
from rich.table import Table

from pillbox.cli._common import ago, console, database_options, emit_json, guard, open_db
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
    delivery = guard(lambda: broker.delivery(delivery_id))
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
    missing = [i for i in delivery_ids if not guard(functools.partial(broker.replay, i, now))]
    replayed = len(delivery_ids) - len(missing)
    click.echo(f"replayed {replayed} delivery(ies)")
    if missing:
        raise click.ClickException("not dead (or unknown): " + ", ".join(map(str, missing)))


@dead.command()
@click.argument("delivery_ids", type=int, nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@database_options
def drop(delivery_ids: tuple[int, ...], yes: bool, database: str | None,
         app_path: str | None) -> None:
    """Delete dead deliveries for good."""
    broker = open_db(database, app_path)
    if not yes:
        click.confirm(f"delete {len(delivery_ids)} dead delivery(ies) for good?", abort=True)
    missing = [i for i in delivery_ids if not guard(functools.partial(broker.drop, i))]
    click.echo(f"dropped {len(delivery_ids) - len(missing)} delivery(ies)")
    if missing:
        raise click.ClickException("not dead (or unknown): " + ", ".join(map(str, missing)))
