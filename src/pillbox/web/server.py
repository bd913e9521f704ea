"""Web child entry: uvicorn on the listening socket inherited from the supervisor."""

from __future__ import annotations

import asyncio

import uvicorn

from pillbox import defaults
from pillbox.app import App
from pillbox.protocol import Reporter
from pillbox.web.guard import Guard
from pillbox.web.resolve import resolve_web


def serve(app: App, reporter: Reporter, socket_fd: int) -> int:
    app.configure_pool(4)
    app.broker  # noqa: B018 - open before serving, never first inside a request's transaction
    guard = Guard(app, resolve_web(app), reporter)  # type: ignore[arg-type]
    config = uvicorn.Config(guard, fd=socket_fd, lifespan="auto", access_log=False,
                            log_level="warning", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    asyncio.run(_serve(server, reporter))
    return 0


async def _serve(server: uvicorn.Server, reporter: Reporter) -> None:
    beat = asyncio.create_task(_heartbeat(reporter, server))
    reporter.send("ready")
    try:
        await server.serve()
    finally:
        beat.cancel()


async def _heartbeat(reporter: Reporter, server: uvicorn.Server) -> None:
    """Beats from the event loop itself: a blocked loop stops the heartbeat."""
    while not server.should_exit:
        reporter.send("hb")
        await asyncio.sleep(defaults.HEARTBEAT_INTERVAL_S)
