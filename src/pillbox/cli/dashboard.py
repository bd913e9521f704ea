"""`pillbox dashboard`: the ops dashboard, JSON API and metrics on their own port."""

from __future__ import annotations

import os

import click

from pillbox.cli._common import database_options, open_db
from pillbox.cli.run import bind_socket, parse_bind

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

    host, port = parse_bind(bind)
    token = os.environ.get(dash.TOKEN_ENV) or None
    if dev and not is_loopback(host):
        raise click.UsageError(f"--dev serves without authentication, so it only binds a "
                               f"loopback address (127.0.0.1, ::1, localhost), not {host!r}")
    if not dev and token is None:
        raise click.UsageError(f"set {dash.TOKEN_ENV} to a long random secret (for example "
                               "`openssl rand -hex 32`), or use --dev on a loopback address")
    broker = open_db(database, app_path)
    try:
        # bound here, as `pillbox run` binds: a port in use is a clean error (exit 1), not
        # uvicorn's startup failure (exit 3, which `status` uses for "needs attention")
        sock = bind_socket(host, port)
        port = sock.getsockname()[1]
        app = dash.from_environment(lambda: broker, dev=dev)
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"pillbox dashboard: http://{shown}:{port}{dash.PREFIX}/"
                   + ("  (dev mode: no authentication, loopback only)" if dev else ""),
                   err=True)
        config = uvicorn.Config(dash.standalone(app), host=host, port=port,
                                log_level="warning", access_log=False, lifespan="on")
        with sock:
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        broker.close()
