"""ASGI middleware around the user's app, in every web process.

1. `/_pillbox/health` (liveness) and `/_pillbox/ready` (database reachable);
   the rest of `/_pillbox/` is the ops dashboard, JSON API and metrics (pillbox.dashboard),
   behind $PILLBOX_DASHBOARD_TOKEN; it never reaches the app and is never recorded as its error;
2. report each request in flight to the supervisor, so a crash record names it;
3. an exception escaping the app becomes a 500 (if nothing was sent yet) and a stored error
   with method, path and traceback. The app's own exception handlers run first.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pillbox.app import App
from pillbox.protocol import Reporter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("pillbox.web")


class Guard:
    def __init__(self, app: App, inner: ASGIApp, reporter: Reporter) -> None:
        self.app = app
        self.inner = inner
        self.reporter = reporter
        self._ids = itertools.count(1)
        self._dashboard: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path = scope.get("path", "")
        if path == "/_pillbox/health":
            await _json(send, 200, {"status": "ok"})
            return
        if path == "/_pillbox/ready":
            await self._ready(send)
            return
        if path == "/_pillbox" or path.startswith("/_pillbox/"):
            await self._ops(scope, receive, send)
            return
        await self._guarded(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """uvicorn's lifespan="auto" takes an app that raises during lifespan for one that does
        not speak the protocol, and serves it anyway. An app that did read
        "lifespan.startup" and then raised has a startup that failed: say so to uvicorn,
        which then stops this process, and the crash record keeps the traceback."""
        received: list[str] = []
        answered: list[str] = []

        async def receiving() -> Message:
            message = await receive()
            received.append(str(message.get("type", "")))
            return message

        async def sending(message: Message) -> None:
            answered.append(str(message.get("type", "")))
            await send(message)

        try:
            await self.inner(scope, receiving, sending)
        except Exception as exc:
            if received == ["lifespan.startup"] and not answered:
                log.error("the app's lifespan startup failed:\n%s", traceback.format_exc())
                await send({"type": "lifespan.startup.failed",
                            "message": f"{type(exc).__name__}: {exc}"})
                return
            raise

    async def _ops(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The dashboard, created on first use (web processes that never serve it never load
        its templates)."""
        if scope.get("path") == "/_pillbox":
            await _json(send, 307, {"location": "/_pillbox/"}, [(b"location", b"/_pillbox/")])
            return
        if self._dashboard is None:
            from pillbox import dashboard

            self._dashboard = dashboard.from_environment(lambda: self.app.broker)
        exc, started = await _call(self._dashboard, scope, receive, send)
        if exc is not None:
            log.error("dashboard %s raised %s: %s", scope.get("path"), type(exc).__name__,
                      str(exc)[:300])
            if not started:
                await _json(send, 500, {"error": f"dashboard error: {type(exc).__name__}"})

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = str(next(self._ids))
        method, path = scope.get("method", "?"), scope.get("path", "")
        self.reporter.send("req", r=request_id, m=method, p=path[:300])
        try:
            exc, started = await _call(self.inner, scope, receive, send)
        finally:
            self.reporter.send("reqdone", r=request_id)
        if exc is not None:
            self._record(method, path, exc)
            if not started:
                await _json(send, 500, {"error": "internal server error"})

    def _record(self, method: str, path: str, exc: Exception) -> None:
        text = "".join(traceback.format_exception(exc))
        log.error("%s %s raised %s: %s", method, path, type(exc).__name__, str(exc)[:200])
        try:
            self.app.broker.record_event("web_error", f"{method} {path}\n{text}", time.time())
        except Exception as store_exc:
            log.error("could not store the web error: %s", store_exc)

    async def _ready(self, send: Send) -> None:
        try:
            self.app.broker.paused()
        except Exception as exc:
            await _json(send, 503, {"status": "unavailable", "database": str(exc)[:300]})
            return
        await _json(send, 200, {"status": "ready"})


async def _call(app: ASGIApp, scope: Scope, receive: Receive,
                send: Send) -> tuple[Exception | None, bool]:
    """Run an ASGI app; returns the exception that escaped it (if any) and whether a
    response had already started (then no error response can be sent)."""
    started = False

    async def tracking_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, receive, tracking_send)
    except Exception as exc:
        return exc, started
    return None, started


async def _json(send: Send, status: int, body: dict[str, Any],
                extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(data)).encode()),
                            *(extra_headers or [])]})
    await send({"type": "http.response.body", "body": data})
