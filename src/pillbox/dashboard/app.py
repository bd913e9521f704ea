"""The dashboard: a Starlette app serving HTML pages, their refreshable fragments, the JSON API
and Prometheus metrics, all under one prefix (`/_pillbox`).

Request flow, in `Dashboard.__call__`:
1. static files are public (they hold nothing but CSS and JS);
2. every other request is authenticated (auth.py); unauthenticated callers get 401 (pages add
   a login form, the API a JSON error);
3. every POST goes through `_action`, which parses the body and checks the CSRF token, so no
   action can skip the check;
4. security headers on every response (no caching, no framing, a CSP with no inline script).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pillbox import metrics
from pillbox.broker import SQLBroker
from pillbox.dashboard import data
from pillbox.dashboard.auth import Auth, Session, clear_cookie_header, cookie_header
from pillbox.errors import DatabaseError, PillboxError, UnknownName
from pillbox.humanize import age, when
from pillbox.messages import is_id

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIX = "/_pillbox"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$")  # as pillbox.policy names
MAX_BODY_BYTES = 64 * 1024
REFRESH_S = 5
SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
]
DONE_TEXT = {
    "paused": "Paused {name}: workers stop taking its messages within a second; publishing "
              "still stores them.",
    "resumed": "Resumed {name}.",
    "replayed": "Replayed delivery #{id}: it is available again.",
    "dropped": "Dropped delivery #{id}.",
    "purged": "Purged {count} deliveries of {name}.",
    "purge_dry_run": "Dry run: a purge would remove {count} deliveries of {name}. Nothing was "
                     "deleted.",
    "not_dead": "Delivery #{id} is not dead (any more); nothing was done.",
}


class Dashboard:
    """ASGI app for everything under `/_pillbox/` except health and readiness.

    `broker` is called per request (the web process opens its broker lazily); `token` is
    $PILLBOX_DASHBOARD_TOKEN. Without a token and outside dev mode every request gets 401
    with an explanation.
    """

    def __init__(self, broker: Callable[[], SQLBroker], *, token: str | None,
                 dev: bool = False, clock: Callable[[], float] = time.time,
                 refresh_s: float = REFRESH_S) -> None:
        self.broker = broker
        self.refresh_s = refresh_s
        self.auth = Auth(token, dev=dev)
        self.clock = clock
        self.templates = _templates()
        self.metrics = metrics.Exposition(broker, clock)
        self.app = Starlette(routes=self._routes(), exception_handlers={
            _HTTPError: _error_response, data.NotFound: _error_response,
            UnknownName: _error_response, DatabaseError: self._database_error})

    def _routes(self) -> list[BaseRoute]:
        r = Route
        static = resources.files("pillbox.dashboard").joinpath("static")
        return [
            Mount("/static", StaticFiles(directory=str(static))),
            r("/", self.page_overview),
            r("/login", self.page_login, methods=["GET", "POST"]),
            r("/logout", self.logout, methods=["POST"]),
            r("/subscriptions/{name}", self.page_subscription),
            r("/crashes", self.page_crashes),
            r("/crashes/{crash_id:int}", self.page_crash),
            r("/deliveries/{delivery_id:int}", self.page_delivery),
            r("/metrics", self.metrics_endpoint),
            r("/api/overview", self.api_overview),
            r("/api/subscriptions", self.api_subscriptions),
            r("/api/subscriptions/{name}", self.api_subscription),
            r("/api/subscriptions/{name}/pause", self.act_pause, methods=["POST"]),
            r("/api/subscriptions/{name}/resume", self.act_resume, methods=["POST"]),
            r("/api/subscriptions/{name}/purge", self.act_purge, methods=["POST"]),
            r("/api/crashes", self.api_crashes),
            r("/api/crashes/{crash_id:int}", self.api_crash),
            r("/api/dead", self.api_dead),
            r("/api/dead/{delivery_id:int}", self.api_delivery),
            r("/api/dead/{delivery_id:int}/replay", self.act_replay, methods=["POST"]),
            r("/api/dead/{delivery_id:int}/drop", self.act_drop, methods=["POST"]),
            r("/api/session", self.api_session),
        ]

    # -- ASGI entry ----------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request whose path starts with /_pillbox/ (root_path is set here)."""
        scope = dict(scope)
        scope["root_path"] = scope.get("root_path", "") + PREFIX
        route = scope["path"][len(PREFIX):] if scope["path"].startswith(PREFIX) else scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        extra: list[tuple[bytes, bytes]] = []

        async def secured_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS, *extra]
            await send(message)

        if not self.auth.host_allowed(headers.get("host", "")):
            await _plain(secured_send, 403, "dev mode serves loopback host names only")
            return
        if route.startswith("/static/") or route in ("/login", "/login/"):
            await self.app(scope, receive, secured_send)
            return
        session = self.auth.authenticate(headers, self.clock())
        if session is None:
            await self._unauthorized(scope, route, headers, secured_send)
            return
        if session.new_cookie:
            extra.append((b"set-cookie", cookie_header(
                session.new_cookie, PREFIX, _secure(scope)).encode()))
        scope["pillbox.session"] = session
        await self.app(scope, receive, secured_send)

    async def _unauthorized(self, scope: Scope, route: str, headers: dict[str, str],
                            send: Send) -> None:
        explain = ("authentication required: send Authorization: Bearer <token> "
                   "($PILLBOX_DASHBOARD_TOKEN) or log in")
        if not self.auth.configured:
            explain = ("the dashboard is disabled: set PILLBOX_DASHBOARD_TOKEN in the web "
                       "processes' environment")
        wants_html = (scope.get("method") == "GET" and "text/html" in headers.get("accept", "")
                      and not route.startswith(("/api/", "/metrics")))
        if wants_html:
            body = self._render("login.html", {
                "error": None if self.auth.configured else explain,
                "next": _safe_next(PREFIX + route), "configured": self.auth.configured})
            response: Response = HTMLResponse(body, status_code=401)
        elif route.startswith("/metrics"):
            response = Response(explain + "\n", status_code=401, media_type="text/plain")
        else:
            response = JSONResponse({"error": explain}, status_code=401)
        response.headers["www-authenticate"] = 'Bearer realm="pillbox"'
        await response(scope, _noop_receive, send)

    # -- helpers -------------------------------------------------------------------------
    async def _read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(broker, *args)` off the event loop (opening the broker may connect too)."""
        return await run_in_threadpool(lambda: fn(self.broker(), *args))

    async def _database_error(self, request: Request, exc: Exception) -> Response:
        """The database cannot be read (down, unreachable, not a pillbox database): 503 with
        the reason (DatabaseError names host:port/db, never a password), as JSON for the API
        and as a page for a browser."""
        message = f"the database is unavailable: {exc}"
        if request.url.path.startswith(PREFIX + "/api/"):
            return JSONResponse({"error": message}, status_code=503)
        return self._error_page(request, 503, message, PREFIX + "/",
                                heading="Database unavailable")

    def _render(self, template: str, context: dict[str, Any]) -> str:
        context.setdefault("base", PREFIX)
        context.setdefault("refresh_s", f"{self.refresh_s:g}")
        context.setdefault("now", self.clock())
        return self.templates.get_template(template).render(context)

    def _page(self, request: Request, template: str, partial: str,
              context: dict[str, Any]) -> HTMLResponse:
        """Render a page, or only its refreshable part when asked with ?partial=body."""
        session: Session = request.scope["pillbox.session"]
        context.update(csrf=session.csrf, session_kind=session.kind,
                       path=request.url.path, query=str(request.url.query),
                       done=_done_text(request.query_params))
        if request.query_params.get("partial") == "body":
            return HTMLResponse(self._render(partial, context))
        return HTMLResponse(self._render(template, context))

    async def _action(self, request: Request) -> tuple[dict[str, Any], bool]:
        """The POST body (form or JSON) after the CSRF check; (fields, came from a form)."""
        session: Session = request.scope["pillbox.session"]
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise _HTTPError(413, "request body too large")
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        is_form = ctype == "application/x-www-form-urlencoded"
        if is_form:
            parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            fields: dict[str, Any] = {k: v[-1] for k, v in parsed.items()}
        elif body.strip():
            try:
                loaded = json.loads(body)
            except ValueError:
                raise _HTTPError(400, "the body is neither a form nor JSON") from None
            if not isinstance(loaded, dict):
                raise _HTTPError(400, "the JSON body must be an object")
            fields = loaded
        else:
            fields = {}
        token = fields.get("_csrf") or request.headers.get("x-csrf-token")
        if not self.auth.check_csrf(session, token):
            raise _HTTPError(403, "CSRF token missing or invalid: reload the page (browser) "
                                  "or send Authorization: Bearer (scripts)")
        return fields, is_form

    # -- pages ---------------------------------------------------------------------------
    async def page_overview(self, request: Request) -> Response:
        view = await self._read(data.overview, self.clock())
        return self._page(request, "overview.html", "overview_body.html", {"view": view})

    async def page_subscription(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            view = await self._read(data.subscription, name, self.clock())
        except data.NotFound as exc:
            return self._not_found(request, str(exc))
        return self._page(request, "subscription.html", "subscription_body.html",
                          {"view": view, "name": name})

    async def page_crashes(self, request: Request) -> Response:
        since, until = _float(request, "since", 0.0), _float(request, "until", None)
        records = await self._read(data.crashes, since, until, _int(request, "limit", 200))
        return self._page(request, "crashes.html", "crashes_body.html",
                          {"crashes": records, "since": since, "until": until})

    async def page_crash(self, request: Request) -> Response:
        try:
            record = await self._read(data.crash, request.path_params["crash_id"])
        except data.NotFound as exc:
            return self._not_found(request, str(exc))
        return self._page(request, "crash.html", "crash.html", {"crash": record})

    async def page_delivery(self, request: Request) -> Response:
        try:
            found = await self._read(data.delivery, request.path_params["delivery_id"])
        except data.NotFound as exc:
            return self._not_found(request, str(exc))
        return self._page(request, "delivery.html", "delivery.html", {"delivery": found})

    def _not_found(self, request: Request, message: str) -> Response:
        return self._error_page(request, 404, message, PREFIX + "/")

    def _error_page(self, request: Request, status: int, message: str, back: str,
                    heading: str | None = None) -> Response:
        heading = heading or ("Not found" if status == 404 else "Nothing was done")
        response = self._page(request, "error.html", "error.html",
                              {"message": message, "status": status, "back": back,
                               "heading": heading})
        response.status_code = status
        return response

    async def page_login(self, request: Request) -> Response:
        if self.auth.dev:
            return RedirectResponse(PREFIX + "/", status_code=303)
        if request.method == "GET":
            return HTMLResponse(self._render("login.html", {
                "error": None, "next": _safe_next(request.query_params.get("next", "")),
                "configured": self.auth.configured}))
        body = await request.body()
        fields = {k: v[-1] for k, v in parse_qs(body[:MAX_BODY_BYTES].decode(
            "utf-8", "replace")).items()}
        target = _safe_next(fields.get("next", ""))
        if not self.auth.check_token(fields.get("token", "")):
            return HTMLResponse(self._render("login.html", {
                "error": "wrong token" if self.auth.configured else
                "the dashboard is disabled: set PILLBOX_DASHBOARD_TOKEN",
                "next": target, "configured": self.auth.configured}), status_code=401)
        cookie, _ = self.auth.issue(self.clock())
        response = RedirectResponse(target, status_code=303)
        response.headers.append("set-cookie", cookie_header(cookie, PREFIX,
                                                            _secure(request.scope)))
        return response

    async def logout(self, request: Request) -> Response:
        try:
            await self._action(request)
        except _HTTPError as exc:
            return exc.response()
        response = RedirectResponse(PREFIX + "/login", status_code=303)
        response.headers.append("set-cookie", clear_cookie_header(PREFIX))
        return response

    # -- metrics -------------------------------------------------------------------------
    async def metrics_endpoint(self, request: Request) -> Response:
        body, content_type = await run_in_threadpool(self.metrics.render)
        return Response(body, media_type=content_type)

    # -- API reads -----------------------------------------------------------------------
    # Unknown names raise data.NotFound or UnknownName, bad parameters _HTTPError:
    # the app's exception handlers turn them into JSON errors.
    async def api_overview(self, request: Request) -> Response:
        return JSONResponse(await self._read(data.overview, self.clock()))

    async def api_subscriptions(self, request: Request) -> Response:
        subs = await self._read(data.subscriptions, self.clock())
        return JSONResponse({"now": self.clock(), "subscriptions": subs})

    async def api_subscription(self, request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse(await self._read(data.subscription, name, self.clock()))

    async def api_crashes(self, request: Request) -> Response:
        since, until = _float(request, "since", 0.0), _float(request, "until", None)
        limit = _int(request, "limit", 100)
        return JSONResponse({"crashes": await self._read(data.crashes, since, until, limit)})

    async def api_crash(self, request: Request) -> Response:
        return JSONResponse(await self._read(data.crash, request.path_params["crash_id"]))

    async def api_dead(self, request: Request) -> Response:
        subscription = request.query_params.get("subscription") or None
        limit = _int(request, "limit", 100)
        return JSONResponse({"dead": await self._read(data.dead, subscription, limit)})

    async def api_delivery(self, request: Request) -> Response:
        return JSONResponse(await self._read(data.delivery, request.path_params["delivery_id"]))

    async def api_session(self, request: Request) -> Response:
        """Who the caller is and the CSRF token its POSTs need (scripts using a cookie)."""
        session: Session = request.scope["pillbox.session"]
        return JSONResponse({"kind": session.kind, "csrf": session.csrf})

    # -- API actions ---------------------------------------------------------------------
    async def _act(self, request: Request, work: Callable[[dict[str, Any], bool], Awaitable[
            tuple[dict[str, Any], dict[str, Any]]]]) -> Response:
        """CSRF check, then `work(fields, is_form)` -> (JSON result, what the page says).
        Errors: JSON for the API, an error page for a browser form."""
        try:
            fields, is_form = await self._action(request)
        except _HTTPError as exc:
            return exc.response()
        try:
            result, done = await work(fields, is_form)
        except (_HTTPError, PillboxError, ValueError) as exc:
            status, message, heading = (
                (exc.status, str(exc), None) if isinstance(exc, _HTTPError)
                else (404, str(exc), None) if isinstance(exc, UnknownName)
                else (503, f"the database is unavailable: {exc}", "Database unavailable")
                if isinstance(exc, DatabaseError) else (400, str(exc), None))
            if is_form:
                return self._error_page(request, status, message,
                                        _safe_next(str(fields.get("_next") or "")), heading)
            return JSONResponse({"error": message}, status_code=status)
        if is_form:
            target = _safe_next(str(fields.get("_next") or PREFIX + "/")).split("?", 1)[0]
            return RedirectResponse(f"{target}?{urlencode(done)}", status_code=303)
        return JSONResponse(result)

    async def act_pause(self, request: Request) -> Response:
        return await self._set_paused(request, True)

    async def act_resume(self, request: Request) -> Response:
        return await self._set_paused(request, False)

    async def _set_paused(self, request: Request, paused: bool) -> Response:
        name = request.path_params["name"]

        async def work(fields: dict[str, Any], is_form: bool) -> tuple[dict[str, Any],
                                                                        dict[str, Any]]:
            await self._read(lambda b: b.set_paused(name, paused))
            return ({"subscription": name, "paused": paused},
                    {"done": "paused" if paused else "resumed", "name": name})

        return await self._act(request, work)

    async def act_replay(self, request: Request) -> Response:
        return await self._dead_action(request, "replay")

    async def act_drop(self, request: Request) -> Response:
        return await self._dead_action(request, "drop")

    async def _dead_action(self, request: Request, verb: str) -> Response:
        delivery_id = request.path_params["delivery_id"]

        async def work(fields: dict[str, Any], is_form: bool) -> tuple[dict[str, Any],
                                                                        dict[str, Any]]:
            if not is_id(delivery_id):
                raise _HTTPError(404, f"no delivery #{delivery_id}")
            if verb == "replay":
                ok = await self._read(lambda b: b.replay(delivery_id, self.clock()))
            else:
                ok = await self._read(lambda b: b.drop(delivery_id))
            if not ok and not is_form:
                exists = await self._read(lambda b: b.delivery(delivery_id) is not None)
                if not exists:
                    raise _HTTPError(404, f"no delivery #{delivery_id}")
                raise _HTTPError(409, f"delivery #{delivery_id} is not dead; nothing was done")
            done = "not_dead" if not ok else "replayed" if verb == "replay" else "dropped"
            return ({"delivery_id": delivery_id,
                     "replayed" if verb == "replay" else "dropped": True},
                    {"done": done, "id": delivery_id})

        return await self._act(request, work)

    async def act_purge(self, request: Request) -> Response:
        """Targeted purge: `before` (Unix seconds or ISO time) and/or `ids` (message or
        delivery ids), `dry_run` (the form's box is ticked by default; JSON defaults to
        false)."""
        name = request.path_params["name"]

        async def work(fields: dict[str, Any], is_form: bool) -> tuple[dict[str, Any],
                                                                        dict[str, Any]]:
            before, ids, dry_run = _purge_args(fields, is_form)
            count = await self._read(lambda b: b.purge(name, before=before, ids=ids,
                                                       dry_run=dry_run))
            return ({"subscription": name, "count": count, "dry_run": dry_run,
                     "before": before, "ids": ids},
                    {"done": "purge_dry_run" if dry_run else "purged", "name": name,
                     "count": count})

        return await self._act(request, work)


async def _error_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, _HTTPError):
        return exc.response()
    return JSONResponse({"error": str(exc)}, status_code=404)  # NotFound, UnknownName


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def response(self) -> Response:
        return JSONResponse({"error": str(self)}, status_code=self.status)


def _purge_args(fields: dict[str, Any],
                is_form: bool) -> tuple[float | None, list[str] | None, bool]:
    before = _parse_before(fields.get("before"))
    ids = _parse_ids(fields.get("ids"))
    if before is None and not ids:
        raise _HTTPError(400, "a targeted purge needs `before` (a time) and/or `ids`; "
                              "nothing was purged")
    dry = fields.get("dry_run", None if is_form else False)
    if is_form:
        dry_run = dry not in (None, "", "0", "false", "off")
    else:
        if not isinstance(dry, bool):
            raise _HTTPError(400, "dry_run must be true or false")
        dry_run = dry
    return before, ids, dry_run


def _parse_ids(value: Any) -> list[str] | None:
    """Message ids (strings) or delivery ids (integers, or their digits): a JSON list of
    them, or one string separated by commas or spaces (the form's field). Anything else
    (objects, booleans, fractions) is refused rather than turned into a string that matches
    nothing."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    if not isinstance(value, list):
        raise _HTTPError(400, "ids must be a list of message ids (strings) or delivery ids "
                              f"(integers), or one comma-separated string; got "
                              f"{type(value).__name__}")
    ids = []
    for item in value:
        if isinstance(item, str) and item.strip():
            ids.append(item.strip())
        elif isinstance(item, int) and not isinstance(item, bool) and is_id(item):
            ids.append(str(item))
        else:
            raise _HTTPError(400, "ids must hold message ids (non-empty strings) or delivery "
                                  f"ids (integers from 1 to 2**63-1); got {_brief(item)}")
    return ids


def _brief(value: Any) -> str:
    """A refused value for an error message: its JSON, cut short."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_before(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _HTTPError(400, f"before must be Unix seconds or an ISO time; got "
                              f"{_brief(value)}")
    text = str(value).strip()
    number: float | None
    try:
        number = float(value) if isinstance(value, int | float) else float(text)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    except ValueError:
        number = None  # perhaps an ISO time
    if number is not None:
        if not math.isfinite(number):
            raise _HTTPError(400, f"before must be a finite number of Unix seconds; got "
                                  f"{_brief(text)}")
        return number
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _HTTPError(400, f"before={text!r} is neither Unix seconds nor an ISO time "
                              "(2026-01-31T10:00, UTC unless it names a zone)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _float(request: Request, name: str, default: float | None) -> Any:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _HTTPError(400, f"{name} must be a finite number (Unix seconds)")
    return number


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 10_000:
        raise _HTTPError(400, f"{name} must be an integer from 1 to 10000")
    return int(raw)


def _safe_next(target: str) -> str:
    """Only same-site dashboard paths: never an open redirect."""
    if (not target.startswith(PREFIX + "/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 32 for c in target)):
        return PREFIX + "/"
    return target


def _done_text(params: Any) -> str | None:
    template = DONE_TEXT.get(params.get("done", ""))
    if template is None:
        return None
    count = params.get("count", "")
    name = params.get("name", "")
    return template.format(name=name if _NAME.match(name) else "?",
                           id=params.get("id", "")[:20] if params.get("id", "").isdigit()
                           else "?", count=count if count.isdigit() else "?")


def _secure(scope: Scope) -> bool:
    return scope.get("scheme") == "https"


async def _noop_receive() -> MutableMapping[str, Any]:
    return {"type": "http.disconnect"}


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pillbox.dashboard", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    env.filters["when"] = when
    env.filters["ago"] = _ago
    env.filters["age"] = age
    env.filters["pretty"] = _pretty
    env.filters["url"] = lambda value: quote(str(value), safe="")
    env.filters["first_line"] = _first_line
    env.filters["last_line"] = _last_line
    env.filters["mib"] = lambda n: f"{(n or 0) / 2**20:.0f} MiB"
    return env




def _ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "-"
    return age(max(0.0, (now or time.time()) - ts)) + " ago"


def _pretty(value: Any) -> str:
    """JSON for humans; returned as plain text so autoescape escapes it."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _last_line(text: str | None) -> str:
    """The last non-empty line of a traceback: the exception itself."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
