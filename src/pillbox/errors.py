"""Every error pillbox raises on purpose.

    PillboxError
    ├── ConfigError            bad declaration or setting (names the setting and the value)
    │   └── CronError          bad cron expression or time zone (names the cron)
    ├── PayloadError           a payload pillbox refuses to store
    │   ├── PayloadNotJSON     names the offending value's type and its path in the payload
    │   └── PayloadTooLarge    gives the payload's size and the limit
    ├── UnknownName            a topic or subscription nobody declared (suggests the nearest)
    │   ├── UnknownTopic
    │   └── UnknownSubscription
    ├── DatabaseError          unreachable, wrong URL, corrupt file (never echoes a password)
    └── AppImportError         `module:attr` does not import or is not an App
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PillboxError(Exception):
    """Base class of every error pillbox raises on purpose."""


class ConfigError(PillboxError):
    """A declaration or setting is invalid."""


class CronError(ConfigError):
    """A cron expression or time zone is invalid."""


class PayloadError(PillboxError):
    """A payload was refused; nothing was stored."""


class PayloadNotJSON(PayloadError):
    """The payload holds a value JSON cannot represent."""


class PayloadTooLarge(PayloadError):
    """The encoded payload is over the size limit."""


class UnknownName(PillboxError):
    """A name that was never declared."""

    kind = "name"

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        close = difflib.get_close_matches(name, self.known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(repr(k) for k in self.known[:10]) or "none"
        if len(self.known) > 10:
            listing += f", ... and {len(self.known) - 10} more"
        super().__init__(f"unknown {self.kind} {name!r}{hint} (declared: {listing})")


class UnknownTopic(UnknownName):
    kind = "topic"


class UnknownSubscription(UnknownName):
    kind = "subscription"


class DatabaseError(PillboxError):
    """The database cannot be used: down, wrong URL, or not a pillbox database."""


class AppImportError(PillboxError):
    """The `module:attr` app path could not be loaded."""
