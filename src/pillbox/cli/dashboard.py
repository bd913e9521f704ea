"""`pillbox dashboard`: the ops dashboard, JSON API and metrics on their own port."""

from __future__ import annotations

import os

import click

from pillbox.cli._common import database_options, open_db

DEFAULT_BIND = "127.0.0.1:8100"


@click.command()
@click.option("--bind", default=DEFAULT_BIND, show_default=True, envvar="PILLBOX_DASHBOARD_BIND",
              help="host:port to listen on [env PILLBOX_DASHBOARD_BIND]")
@click.option("--dev", is_flag=True,
              help="Local development: no token needed. Only allowed on a loopback address.")
@database_options
def dashboard(bind: str, dev: bool, database: str | None, app_path: str | None) -> None:
    """Serve the dashboard, JSON API and Prometheus metrics at http://BIND/_pillbox/.

    Requires $PILLBOX_DASHBOARD_TOKEN (send it as Authorization: Bearer, or log in with it),
    unless --dev on a loopback address.
    """
    import uvicorn

    from pillbox import dashboard as dash
    from pillbox.dashboard.auth import is_loopback

    host, _, port_text = bind.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit():
        raise click.BadParameter(f"{bind!r} is not host:port", param_hint="--bind")
    token = os.environ.get(dash.TOKEN_ENV) or None
    if dev and not is_loopback(host):
        raise click.UsageError(f"--dev serves without authentication, so it only binds a "
                               f"loopback address (127.0.0.1, ::1, localhost), not {host!r}")
    if not dev and token is None:
        raise click.UsageError(f"set {dash.TOKEN_ENV} to a long random secret (for example "
                               "`openssl rand -hex 32`), or use --dev on a loopback address")
    broker = open_db(database, app_path)
    app = dash.from_environment(lambda: broker, dev=dev)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"pillbox dashboard: http://{shown}:{port_text}{dash.PREFIX}/"
               + ("  (dev mode: no authentication, loopback only)" if dev else ""), err=True)
    try:
        uvicorn.run(dash.standalone(app), host=host, port=int(port_text), log_level="warning",
                    access_log=False, lifespan="on")
    finally:
        broker.close()
