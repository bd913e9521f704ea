"""`pillbox drill [SCENARIO]`: replay the original outage (and other failure shapes) against
a running app and report whether the promise was kept."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from pillbox.drill import databases
from pillbox.drill.report import Report, judge, render
from pillbox.drill.runner import Drill
from pillbox.drill.scenarios import SCENARIOS
from pillbox.drill.timeline import svg
from pillbox.errors import PillboxError

DEFAULT_APP = "examples.incidents.app:app"


def _find_the_example_app() -> None:
    """The example app lives in the pillbox checkout (examples/incidents), not in the
    package: found in the working directory, or next to this editable install's src/."""
    here = Path.cwd()
    if (here / "examples" / "incidents" / "app.py").is_file():
        return
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "examples" / "incidents" / "app.py").is_file():
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(checkout), os.environ.get("PYTHONPATH", "")])
        return
    raise click.ClickException(
        "the example app examples/incidents ships with the pillbox source checkout, not the "
        "package: run `pillbox drill` from the checkout, or drill your own app with "
        "--app module:attribute")


@click.command()
@click.argument("scenario", default="poison-pill",
                type=click.Choice([*SCENARIOS, "all"]))
@click.option("--app", "app_path", default=DEFAULT_APP, show_default=True,
              help="module:attribute of the app to drill (shaped like the example app)")
@click.option("--duration", type=click.FloatRange(8, 3600), default=30.0, show_default=True,
              help="Seconds of traffic per scenario")
@click.option("--database", default=None,
              help="postgresql://... to drill on PostgreSQL (a fresh schema is used); "
                   "default: a fresh SQLite file")
@click.option("--url", default=None, help="Attach to an app already running at this URL "
              "(then --database must be its database)")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Write the report(s) as JSON here")
@click.option("--picture", "picture_path", type=click.Path(dir_okay=False), default=None,
              help="Write the timeline picture (SVG) here; with 'all', one per scenario")
@click.option("--keep", is_flag=True, help="Keep the drill's PostgreSQL schema afterwards")
def drill(scenario: str, app_path: str, duration: float, database: str | None, url: str | None,
          json_path: str | None, picture_path: str | None, keep: bool) -> None:
    """Replay SCENARIO (default: poison-pill, the original outage) and report.

    Exits non-zero when the promise was broken: web availability under 99.9%, a good message
    lost, the poison not quarantined, or no traceback captured."""
    if url and not database:
        raise click.UsageError("--url needs --database (the attached app's database)")
    if app_path == DEFAULT_APP and not url:
        _find_the_example_app()
    names = list(SCENARIOS) if scenario == "all" else [scenario]
    reports: list[Report] = []
    for name in names:
        reports.append(_one(name, app_path, duration, database, url, picture_path, keep,
                            several=len(names) > 1))
    if json_path:
        data = [r.as_dict() for r in reports]
        Path(json_path).write_text(json.dumps(data if len(data) > 1 else data[0], indent=2))
    if len(reports) > 1:
        click.echo("\nsummary: " + ", ".join(f"{r.scenario} {'ok' if r.passed else 'FAILED'}"
                                              for r in reports))
    sys.exit(0 if all(r.passed for r in reports) else 1)


def _one(name: str, app_path: str, duration: float, database: str | None, url: str | None,
         picture_path: str | None, keep: bool, several: bool) -> Report:
    scenario = SCENARIOS[name]
    click.echo(f"\n== drill {name}: {scenario.description}")
    try:
        with databases.fresh(None if url else database, keep) as db_url:
            runner = Drill(scenario, app_path, database if url and database else db_url,
                           duration, url=url)
            outcome = runner.run(say=lambda text: click.echo(f"   {text}"))
    except (PillboxError, RuntimeError, OSError) as exc:
        raise click.ClickException(f"drill {name} could not run: {exc}") from None
    report = judge(outcome)
    for line in render(report):
        click.echo(line)
    if picture_path:
        target = Path(picture_path)
        if several:
            target = target.with_name(f"{target.stem}-{name}{target.suffix or '.svg'}")
        target.write_text(svg(outcome, f"pillbox drill {name} on {report.database}"))
        click.echo(f"  picture    {target}")
    return report
