"""The `pillbox` command. One module per command family; each returns an exit code."""

from __future__ import annotations

import sys

import click

from pillbox import __version__
from pillbox.cli.actions import migrate, pause, procfile, publish, purge, resume
from pillbox.cli.crashes import crashes
from pillbox.cli.dashboard import dashboard
from pillbox.cli.dead import dead
from pillbox.cli.drill import drill
from pillbox.cli.run import run
from pillbox.cli.status import status


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix":
                               "PILLBOX"})
@click.version_option(__version__, prog_name="pillbox")
def cli() -> None:
    """Run a Python app's web, workers and crons in supervised processes."""


for command in (run, status, crashes, dead, pause, resume, purge, publish, procfile, migrate,
                dashboard, drill):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="pillbox", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
