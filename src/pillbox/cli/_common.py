"""Shared CLI plumbing: finding the database, loading the app, printing JSON."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from click.core import ParameterSource
from rich.console import Console

from pillbox import defaults
from pillbox.app import App
from pillbox.broker import SQLBroker, describe_url, open_broker, sqlite_path
from pillbox.errors import PillboxError
from pillbox.humanize import age, when
from pillbox.loader import load_app
from pillbox.messages import is_id

F = TypeVar("F", bound=Callable[..., Any])

EX_ATTENTION = 3
#: Delivery and crash ids are 64-bit signed integers on both engines; a larger number (which
#: SQLite cannot even bind) names nothing.
__all__ = [
    "EX_ATTENTION",
    "age",
    "ago",
    "console",
    "database_options",
    "emit_json",
    "guard",
    "is_id",
    "load",
    "open_db",
    "parse_time",
    "when",
]


def database_options(func: F) -> F:
    """`--database URL` and `--app module:attr` (whose database is used)."""
    func = click.option("--app", "app_path", default=None, envvar="PILLBOX_APP",
                        help="module:attribute of the App whose database to use "
                             "[env PILLBOX_APP]")(func)
    func = click.option("--database", "database", default=None,
                        envvar=["PILLBOX_DATABASE_URL", "DATABASE_URL"],
                        help="database URL [env PILLBOX_DATABASE_URL, DATABASE_URL; default "
                             f"{defaults.DATABASE_URL}]")(func)
    return func


def open_db(database: str | None, app_path: str | None, create: bool = False) -> SQLBroker:
    """The broker for an operator command. A SQLite file that does not exist is an error
    (a command run from the wrong folder must not report a fresh, empty, healthy database),
    unless `create`.

    `--app` names a database too (the app's): both given on the command line is a usage
    error; one on the command line and the other from the environment, the command line
    wins; both from the environment, the app's database is used."""
    if database and app_path:
        explicit_db, explicit_app = _on_command_line("database"), _on_command_line("app_path")
        if explicit_db and explicit_app:
            raise click.UsageError(
                "--database and --app both say which database to use: pass one (--app reads "
                "the app's own database)")
        if explicit_db:
            app_path = None
    url = database or defaults.DATABASE_URL
    path = None if app_path else sqlite_path(url)
    if path is not None and not create and not os.path.exists(path):
        raise click.ClickException(
            f"no pillbox database at {os.path.abspath(path)!r}: run from the app's folder, or "
            "pass --database URL / --app module:attr")
    try:
        if app_path:
            return load(app_path).broker
        broker = open_broker(url, pool_size=2, migrate=False)
        if not create and not broker.has_schema():
            broker.close()
            raise click.ClickException(
                f"no pillbox tables in {describe_url(url)}: pillbox has not run against this "
                "database. Check the URL (or pass --app module:attr), or create them with "
                "`pillbox migrate`")
        broker.migrate()  # upgrades an older schema; a no-op when it is current
        return broker
    except PillboxError as exc:
        raise click.ClickException(str(exc)) from None


def _on_command_line(param: str) -> bool:
    """Whether the running command (or a group above it) got `param` on the command line."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.get_parameter_source(param) is ParameterSource.COMMANDLINE:
            return True
        ctx = ctx.parent
    return False


def console() -> Console:
    """Rich output; as wide as $COLUMNS (or 200) when piped, so tables are not cut to 80."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    return Console(highlight=False, width=int(os.environ.get("COLUMNS", "200")))


def load(app_path: str) -> App:
    try:
        return load_app(app_path)
    except PillboxError as exc:
        raise click.ClickException(str(exc)) from None


def guard(func: Callable[[], Any]) -> Any:
    """Run an operation, turning pillbox errors into clean CLI errors."""
    try:
        return func()
    except (PillboxError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def emit_json(value: Any) -> None:
    click.echo(json.dumps(_plain(value), indent=2, default=str))


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    seconds = (now or time.time()) - ts
    return age(seconds)


def parse_time(text: str) -> float:
    """An ISO time (UTC if no zone), or a duration ago like 10m, 2h, 3d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    stripped = text.strip()
    if stripped and stripped[-1] in units and stripped[:-1].replace(".", "", 1).isdigit():
        return time.time() - float(stripped[:-1]) * units[stripped[-1]]
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither an ISO time (2026-12-03T10:00) nor a "
                                 "duration ago (30m, 2h, 1d)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
