"""Loads the named SQL blocks of a dialect from `sql/<dialect>/queries.sql`.

A block starts with `-- name: <name>`; the next comment line says what it does.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_BLOCK = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@functools.cache
def load(dialect: str) -> dict[str, str]:
    """Every named query of the dialect, by name."""
    text = resources.files("pillbox.broker").joinpath(f"sql/{dialect}/queries.sql").read_text()
    parts = _BLOCK.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration of the dialect, in order."""
    folder = resources.files("pillbox.broker").joinpath(f"sql/{dialect}/migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)
