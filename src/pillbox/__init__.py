"""pillbox: run a Python app's web requests, message handlers and crons in supervised
processes; a message that crashes its process is quarantined with the evidence attached."""

from pillbox.app import App
from pillbox.errors import (
    ConfigError,
    CronError,
    DatabaseError,
    PayloadError,
    PayloadNotJSON,
    PayloadTooLarge,
    PillboxError,
    UnknownSubscription,
    UnknownTopic,
)
from pillbox.messages import Message

__version__ = "0.1.0"

__all__ = [
    "App",
    "ConfigError",
    "CronError",
    "DatabaseError",
    "Message",
    "PayloadError",
    "PayloadNotJSON",
    "PayloadTooLarge",
    "PillboxError",
    "UnknownSubscription",
    "UnknownTopic",
    "__version__",
]
