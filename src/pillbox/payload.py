"""Payload encoding: JSON only, size-limited, with errors that point at the bad value."""

from __future__ import annotations

import json
from typing import Any

from pillbox.errors import PayloadNotJSON, PayloadTooLarge


def encode(payload: Any, max_bytes: int) -> str:
    """Encode a payload as compact JSON, refusing what JSON cannot hold or what is too large."""
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        path, value = _find_bad(payload, "$", ())
        raise PayloadNotJSON(
            f"payload is not JSON-serialisable: {type(value).__name__} at {path or '$'} ({exc})"
        ) from None
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:
        raise PayloadNotJSON(f"payload holds text that is not valid Unicode ({exc.reason} at "
                             f"character {exc.start} of the encoded JSON)") from None
    if size > max_bytes:
        raise PayloadTooLarge(f"payload is {size} bytes, over the limit of {max_bytes} bytes")
    return text


def decode(text: str) -> Any:
    return json.loads(text)


def _find_bad(value: Any, path: str, parents: tuple[int, ...]) -> tuple[str, Any]:
    """Depth-first search for the first value json cannot encode (a container that holds
    itself is reported where it recurs)."""
    if isinstance(value, dict | list | tuple):
        if id(value) in parents:
            return f"{path} (circular reference)", value
        parents = (*parents, id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{path} (key {key!r})", key
            found = _find_bad(item, f"{path}.{key}", parents)
            if found[0]:
                return found
        return "", None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _find_bad(item, f"{path}[{index}]", parents)
            if found[0]:
                return found
        return "", None
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return path, value
    if value is None or isinstance(value, str | int | float | bool):
        return "", None
    return path, value
