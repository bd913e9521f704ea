"""Loads the user's App from a `module:attribute` path (in children only: the supervisor never
imports user code)."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from pillbox.app import App
from pillbox.errors import AppImportError


def load_app(path: str) -> App:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise AppImportError(f"app path {path!r} must look like 'module:attribute', e.g. app:app")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name is not None and \
                (module_name == exc.name or module_name.startswith(exc.name + ".")):
            # the app's own module is not there (a typo, the wrong folder): one line will do
            raise AppImportError(
                f"cannot import {module_name!r} (from {path!r}): no module named {exc.name!r} "
                f"in {os.getcwd()} or on PYTHONPATH; run from the app's folder") from None
        raise AppImportError(f"cannot import {module_name!r} (from {path!r}):\n"
                             f"{_user_traceback(exc)}") from None
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise AppImportError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, App):
        raise AppImportError(f"{path!r} is a {type(app).__name__}, not a pillbox.App")
    return app


def _user_traceback(exc: BaseException) -> str:
    """The traceback of an import that raised, without importlib's own frames."""
    tb = traceback.TracebackException.from_exception(exc)
    tb.stack = traceback.StackSummary.from_list(
        [frame for frame in tb.stack
         if not frame.filename.startswith("<frozen importlib")
         and not frame.filename.endswith(("importlib/__init__.py", "pillbox/loader.py"))])
    return "".join(tb.format()).rstrip()
