"""The app's ASGI callable, from `app.web` (an object, or a "module:attr" string).

Resolved by the throwaway inspect child before anything starts, so a bad value stops
`pillbox run` with a message naming it instead of crash-looping the web tier."""

from __future__ import annotations

import importlib
import inspect

from pillbox.app import App
from pillbox.errors import ConfigError


def resolve_web(app: App) -> object:
    web = app.web
    if isinstance(web, str):
        module, _, attr = web.partition(":")
        if not module or not attr:
            raise ConfigError(f"App.web {web!r}: a string must be 'module:attribute'")
        try:
            found = importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"App.web {web!r}: cannot import {module!r}: {exc}") from None
        try:
            web = getattr(found, attr)
        except AttributeError:
            raise ConfigError(f"App.web {web!r}: module {module!r} has no {attr!r}") from None
    if not callable(web):
        raise ConfigError(f"App.web must be an ASGI app (a callable) or a 'module:attribute' "
                          f"string, got {type(web).__name__} {web!r}")
    _check_asgi_signature(web)
    return web


def _check_asgi_signature(web: object) -> None:
    """An ASGI 3 app is called with (scope, receive, send); an ASGI 2 app is a class
    instantiated with (scope). Refuse anything else, e.g. a view function."""
    try:
        signature = inspect.signature(web)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # some C callables: cannot tell
        return
    shapes = ((1, 2, 3), (1,)) if inspect.isclass(web) else ((1, 2, 3),)
    for args in shapes:
        try:
            signature.bind(*args)
            return
        except TypeError:
            continue
    raise ConfigError(f"App.web {web!r} is not an ASGI app: it must take (scope, receive, "
                      f"send), but its signature is {signature}")
