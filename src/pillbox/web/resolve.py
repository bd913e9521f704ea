"""The app's ASGI callable, from `app.web` (an object, or a "module:attr" string).

Resolved by the throwaway inspect child before anything starts, so a bad value stops
`pillbox run` with a message naming it instead of crash-looping the web tier."""

from __future__ import annotations

import importlib

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
    return web
