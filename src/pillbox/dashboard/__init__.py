"""The ops dashboard, its JSON API and Prometheus metrics, under `/_pillbox/`.

Mounted in every web process by the guard (pillbox/web/guard.py), or served alone by
`pillbox dashboard`. Authentication: $PILLBOX_DASHBOARD_TOKEN (see auth.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from pillbox.broker import SQLBroker
from pillbox.dashboard.app import PREFIX, REFRESH_S, Dashboard

TOKEN_ENV = "PILLBOX_DASHBOARD_TOKEN"
REFRESH_ENV = "PILLBOX_DASHBOARD_REFRESH_S"

__all__ = ["PREFIX", "TOKEN_ENV", "Dashboard", "from_environment", "standalone"]


def from_environment(broker: Callable[[], SQLBroker], *, dev: bool = False) -> Dashboard:
    """The dashboard a web process mounts: token from $PILLBOX_DASHBOARD_TOKEN (none: every
    request gets 401 saying how to enable it); pages refresh every
    $PILLBOX_DASHBOARD_REFRESH_S seconds (default 5, 0 turns it off)."""
    refresh = os.environ.get(REFRESH_ENV, "")
    try:
        refresh_s = max(0.0, float(refresh)) if refresh else REFRESH_S
    except ValueError:
        refresh_s = REFRESH_S
    token = None if dev else os.environ.get(TOKEN_ENV) or None
    return Dashboard(broker, token=token, dev=dev, refresh_s=refresh_s)


def standalone(dashboard: Dashboard) -> Callable[..., Any]:
    """An ASGI app serving only the dashboard (for `pillbox dashboard`): `/` redirects to
    `/_pillbox/`, `/_pillbox/health` answers, everything else under the prefix is the
    dashboard, anything else is 404."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path in ("/", PREFIX):
            await _send(send, 307, b"", [(b"location", PREFIX.encode() + b"/")])
        elif path == PREFIX + "/health":
            await _send(send, 200, b'{"status": "ok"}', [(b"content-type", b"application/json")])
        elif path.startswith(PREFIX + "/"):
            await dashboard(scope, receive, send)
        else:
            await _send(send, 404, b"not found\n", [(b"content-type", b"text/plain")])

    return app


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
