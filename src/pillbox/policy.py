"""Declared subscriptions and their delivery policy, validated when declared."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pillbox import defaults
from pillbox.errors import ConfigError
from pillbox.messages import Message

Handler = Callable[[Message], Any] | Callable[[Message], Awaitable[Any]]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,199}$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3}


@dataclass(frozen=True, kw_only=True)
class Subscription:
    """A handler bound to a topic, with the policy its deliveries follow."""

    name: str
    topic: str
    handler: Handler
    max_attempts: int = defaults.MAX_ATTEMPTS
    min_backoff_s: float = defaults.MIN_BACKOFF_S
    max_backoff_s: float = defaults.MAX_BACKOFF_S
    max_crashes: int = defaults.MAX_CRASHES
    timeout_s: float = defaults.TIMEOUT_S
    concurrency: int = defaults.CONCURRENCY
    memory_limit_bytes: int | None = None

    def validate(self) -> None:
        check_name("subscription", self.name)
        check_name("topic", self.topic)
        where = f"subscription {self.name!r}"
        _positive_int(where, "max_attempts", self.max_attempts)
        _positive_int(where, "max_crashes", self.max_crashes)
        _positive_int(where, "concurrency", self.concurrency)
        if self.concurrency > defaults.MAX_CONCURRENCY:
            raise ConfigError(f"{where}: concurrency {self.concurrency} is over the limit of "
                              f"{defaults.MAX_CONCURRENCY} threads per worker process; run "
                              "more worker processes (--workers) instead")
        _positive(where, "min_backoff", self.min_backoff_s)
        _positive(where, "max_backoff", self.max_backoff_s)
        _positive(where, "timeout", self.timeout_s)
        if self.max_backoff_s < self.min_backoff_s:
            raise ConfigError(
                f"{where}: max_backoff ({self.max_backoff_s}) is below min_backoff "
                f"({self.min_backoff_s})"
            )
        if not callable(self.handler):
            raise ConfigError(f"{where}: handler {self.handler!r} is not callable")
        _check_takes_one_message(where, self.handler)
        check_not_generator(where, self.handler)
        if self.memory_limit_bytes is not None and \
                self.memory_limit_bytes < defaults.MIN_MEMORY_LIMIT_BYTES:
            raise ConfigError(
                f"{where}: memory_limit {self.memory_limit_bytes} bytes is below "
                f"{defaults.MIN_MEMORY_LIMIT_BYTES // 2**20} MiB, less than a Python process "
                "needs: every handler would be killed")


def callable_name(kind: str, func: Any, name: str | None, where: str) -> str:
    """The name of a subscription or cron: `name`, else the function's, dashed."""
    if not callable(func):
        raise ConfigError(f"{kind} {where}: {func!r} is not callable")
    if name is not None:
        return name
    function_name = getattr(func, "__name__", None)
    if not isinstance(function_name, str):
        raise ConfigError(f"{kind} {where}: {func!r} has no __name__ to name the {kind} after; "
                          "pass name=...")
    return function_name.replace("_", "-")


def check_not_generator(where: str, func: Any) -> None:
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        raise ConfigError(f"{where}: the function is a generator function (it has `yield`): "
                          "calling it would run none of its body")


def _check_takes_one_message(where: str, handler: Callable[..., Any]) -> None:
    """The handler is called with the message alone: it must accept exactly that."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # some builtins and C callables: cannot tell
        return
    try:
        signature.bind(object())
    except TypeError:
        raise ConfigError(f"{where}: the handler must take one argument (the message), but "
                          f"its signature is {signature}") from None


def check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"invalid {kind} name {name!r}: use letters, digits, '_', '-', '.', ':' "
            "(up to 200 characters, starting with a letter or digit)"
        )


def parse_size(value: int | str | None, where: str) -> int | None:
    """Parse 512_000_000, "512MB" or "1.5GiB" into bytes."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        if isinstance(value, int) and value <= 0:
            raise ConfigError(f"{where}: memory_limit must be positive, got {value!r}")
        return value
    match = _SIZE.match(str(value))
    unit = (match.group(2) or "").lower() if match else ""
    if not match or unit not in _UNITS:
        raise ConfigError(f"{where}: memory_limit {value!r} is not a size like '512MB' or '1GiB'")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ConfigError(f"{where}: memory_limit must be positive, got {value!r}")
    return size


def _positive_int(where: str, field: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}: {field} must be an integer >= 1, got {value!r}")


def _positive(where: str, field: str, value: Any) -> None:
    if (not isinstance(value, int | float) or isinstance(value, bool) or value <= 0
            or not math.isfinite(value)):
        raise ConfigError(f"{where}: {field} must be a finite number of seconds > 0, "
                          f"got {value!r}")
