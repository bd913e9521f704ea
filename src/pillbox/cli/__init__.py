"""The `pillbox` command. One module per command family; each returns an exit code."""

from __future__ import annotations

import sys

import click

from pillbox import __version__
from pillbox.cli.crashes import crashes
from pillbox.cli.drill import drill
from pillbox.cli.run import run


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix":
                               "PILLBOX"})
@click.version_option(__version__, prog_name="pillbox")
def cli() -> None:
    """Run a Python app's web, workers and crons in supervised processes."""


cli.add_command(run)
cli.add_command(crashes)
cli.add_command(drill)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="pillbox", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
