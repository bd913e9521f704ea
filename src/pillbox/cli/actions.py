"""`pillbox pause | resume | purge | publish | migrate | procfile`."""

from __future__ import annotations

import json

import click

from pillbox.cli._common import database_options, guard, load, open_db, parse_time
from pillbox.errors import PillboxError


def _pause_command(name: str, paused: bool, doc: str) -> click.Command:
    """`pillbox pause` and `pillbox resume`: one switch, two words."""

    @click.command(name=name, help=doc)
    @click.argument("subscription")
    @database_options
    def command(subscription: str, database: str | None, app_path: str | None) -> None:
        broker = open_db(database, app_path)
        guard(lambda: broker.set_paused(subscription, paused))
        click.echo(f"{name}d {subscription}")

    return command


pause = _pause_command("pause", True, "Stop delivering SUBSCRIPTION (publishing still "
                       "stores); every process stops pulling it at its next pull.")
resume = _pause_command("resume", False, "Deliver SUBSCRIPTION again.")


@click.command()
@click.argument("subscription")
@click.option("--before", default=None,
              help="Only messages published before this time (ISO, or ago: 30m, 2h)")
@click.option("--ids", default=None, help="Comma-separated message ids (or delivery ids)")
@click.option("--all", "everything", is_flag=True,
              help="Everything waiting or dead in the subscription (required without filters)")
@click.option("--dry-run", is_flag=True, help="Only count")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@database_options
def purge(subscription: str, before: str | None, ids: str | None, everything: bool,
          dry_run: bool, yes: bool, database: str | None, app_path: str | None) -> None:
    """Delete waiting and dead deliveries of SUBSCRIPTION that match; never what is in flight,
    never everything without --all."""
    if before is None and ids is None and not everything:
        raise click.UsageError("say what to purge: --before TIME, --ids ID,... or --all")
    broker = open_db(database, app_path)
    cutoff = parse_time(before) if before else None
    id_list = [i.strip() for i in ids.split(",") if i.strip()] if ids else None

    def run_purge(dry: bool) -> int:
        return broker.purge(subscription, before=cutoff, ids=id_list, everything=everything,
                            dry_run=dry)

    count = guard(lambda: run_purge(True))
    if dry_run or count == 0:
        click.echo(f"would purge {count} delivery(ies) of {subscription}" if dry_run
                   else f"nothing to purge in {subscription}")
        return
    if not yes:
        click.confirm(f"purge {count} delivery(ies) of {subscription}?", abort=True)
    purged = guard(lambda: run_purge(False))
    click.echo(f"purged {purged} delivery(ies) of {subscription}")


@click.command()
@click.argument("app_path", metavar="APP")
@click.argument("topic")
@click.argument("payload")
@click.option("--delay", type=float, default=None, help="Seconds before it is delivered")
def publish(app_path: str, topic: str, payload: str, delay: float | None) -> None:
    """Publish PAYLOAD (JSON) to TOPIC of APP (module:attribute); prints the message id."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="PAYLOAD") from None
    app = load(app_path)
    try:
        click.echo(app.publish(topic, data, delay=delay))
    except PillboxError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@database_options
def migrate(database: str | None, app_path: str | None) -> None:
    """Create or upgrade pillbox's tables (pillbox run also does this at start)."""
    open_db(database, app_path, create=True)
    click.echo("schema up to date")


@click.command()
@click.argument("app_path", metavar="APP")
def procfile(app_path: str) -> None:
    """Print a Procfile that runs APP's work types as separate processes."""
    app = load(app_path)
    lines = []
    if app.web is not None:
        lines.append(f"web: pillbox run {app_path} --only web")
    if app.subscriptions:
        lines.append(f"worker: pillbox run {app_path} --only worker")
    if app.crons:
        lines.append(f"cron: pillbox run {app_path} --only cron")
    click.echo("\n".join(lines))
