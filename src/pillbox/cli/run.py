"""`pillbox run app:app`: the supervisor and its children."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile

import click

from pillbox import defaults
from pillbox.logs import Log
from pillbox.policy import parse_size
from pillbox.supervisor.supervisor import Options, Supervisor

WORK_TYPES = ("web", "worker", "cron")


@click.command()
@click.argument("app_path", metavar="APP")
@click.option("--only", default="", envvar="PILLBOX_RUN_ONLY",
              help="Comma-separated work types to run here: web, worker, cron "
                   "(default: all the app has) [env PILLBOX_RUN_ONLY]")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              envvar="PILLBOX_RUN_WORKERS",
              help="Worker processes (default: CPU count) [env PILLBOX_RUN_WORKERS]")
@click.option("--web-workers", type=click.IntRange(1, 256), default=defaults.WEB_WORKERS,
              show_default=True, envvar="PILLBOX_RUN_WEB_WORKERS",
              help="Web processes sharing the socket [env PILLBOX_RUN_WEB_WORKERS]")
@click.option("--bind", default=None, envvar="PILLBOX_RUN_BIND",
              help="host:port to listen on (default: 0.0.0.0:$PORT when PORT is set, else "
                   f"{defaults.WEB_BIND}) [env PILLBOX_RUN_BIND]")
@click.option("--memory-limit", default=None, envvar="PILLBOX_RUN_MEMORY_LIMIT",
              help="RSS limit of each worker process, e.g. 1GiB [env PILLBOX_RUN_MEMORY_LIMIT]")
@click.option("--shutdown-grace", type=click.FloatRange(0, 3600),
              default=defaults.SHUTDOWN_GRACE_S,
              show_default=True, envvar="PILLBOX_RUN_SHUTDOWN_GRACE",
              help="Seconds in-flight handlers get to finish on SIGTERM")
@click.option("--stall-timeout", type=click.FloatRange(1, 3600),
              default=defaults.STALL_TIMEOUT_S, show_default=True,
              envvar="PILLBOX_RUN_STALL_TIMEOUT",
              help="Seconds without a heartbeat before a child is killed as stalled")
def run(app_path: str, only: str, workers: int | None, web_workers: int, bind: str | None,
        memory_limit: str | None, shutdown_grace: float, stall_timeout: float) -> None:
    """Run APP (module:attribute): web, workers and cron, each in supervised processes."""
    kinds = _parse_only(only)
    try:
        limit = parse_size(memory_limit, "--memory-limit")
    except Exception as exc:
        raise click.BadParameter(str(exc)) from None
    if limit is not None and limit < defaults.MIN_MEMORY_LIMIT_BYTES:
        raise click.BadParameter(f"{memory_limit!r} is below "
                                 f"{defaults.MIN_MEMORY_LIMIT_BYTES // 2**20} MiB, less than a "
                                 "Python process needs", param_hint="--memory-limit")
    host, port = parse_bind(bind)
    spec = inspect_app(app_path)
    _check_something_to_run(spec, kinds)
    run_web = spec["web"] and "web" in kinds
    sock = bind_socket(host, port) if run_web else None
    options = Options(
        app_path=app_path, database=str(spec["database"]),
        run_dir=tempfile.mkdtemp(prefix="pillbox-run-"),
        workers=(os.cpu_count() or 2) if workers is None else workers,
        web_workers=web_workers, web_socket=sock, crons=bool(spec["crons"]) and "cron" in kinds,
        memory_limit_bytes=limit, shutdown_grace_s=shutdown_grace,
        stall_timeout_s=stall_timeout,
    )
    if "worker" not in kinds or not spec["subscriptions"]:
        options.workers = 0
    log = Log()
    if "worker" in kinds and spec["subscriptions"] and options.workers == 0:
        log.event("run.no_workers", "--workers 0: no worker or isolation lane runs here; "
                  "messages wait until workers run elsewhere", level="warning")
    if sock is not None:
        host, port = sock.getsockname()[:2]
        log.event("web.listening", f"web: listening on http://{host}:{port}", host=host,
                  port=port)
    sys.exit(Supervisor(options, log).run())


def _check_something_to_run(spec: dict[str, object], kinds: set[str]) -> None:
    declared = {"web": bool(spec["web"]), "worker": bool(spec["subscriptions"]),
                "cron": bool(spec["crons"])}
    if not any(declared[kind] for kind in kinds):
        has = ", ".join(kind for kind, yes in declared.items() if yes) or "nothing"
        raise click.ClickException(
            f"nothing to run: asked for {', '.join(sorted(kinds))}, but the app declares "
            f"only {has} (web: app.web; worker: @app.subscribe; cron: @app.cron)")


def _parse_only(only: str) -> set[str]:
    if not only.strip():
        return set(WORK_TYPES)
    kinds = {part.strip() for part in only.split(",") if part.strip()}
    unknown = kinds - set(WORK_TYPES)
    if unknown:
        raise click.BadParameter(f"unknown work type(s) {', '.join(sorted(unknown))}; "
                                 f"choose from {', '.join(WORK_TYPES)}", param_hint="--only")
    return kinds


def inspect_app(app_path: str) -> dict[str, object]:
    """Ask a throwaway child what the app declares (the supervisor never imports user code).

    The child also creates the schema and registers the subscriptions."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        target = out.name
    try:
        env = {**os.environ, "PILLBOX_SPEC_FILE": target}
        done = subprocess.run([sys.executable, "-m", "pillbox.child", "inspect", app_path],
                              env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().removeprefix("pillbox: ")
            raise click.ClickException(detail if detail.startswith("cannot import")
                                       else f"cannot load app {app_path!r}:\n{detail}")
        with open(target) as spec_file:
            spec: dict[str, object] = json.load(spec_file)
        return spec
    finally:
        os.unlink(target)


def parse_bind(bind: str | None) -> tuple[str, int]:
    """(host, port) from --bind, else 0.0.0.0:$PORT, else the default."""
    address = bind or (f"0.0.0.0:{os.environ['PORT']}" if os.environ.get("PORT")
                       else defaults.WEB_BIND)
    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise click.BadParameter(f"{address!r} is not host:port (port 0-65535)",
                                 param_hint="--bind")
    return host.strip("[]"), int(port_text)


def bind_socket(host: str, port: int) -> socket.socket:
    address = f"{host}:{port}"
    try:
        sock = socket.create_server((host, port), backlog=2048, reuse_port=False)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {address}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock
