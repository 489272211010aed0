"""Logging set-up for the command line: text or one JSON object per event.

The library only logs through named loggers (``surefetch.client``, ``surefetch.engine``,
``surefetch.job``) and never configures logging itself. Per-request events are logged
at INFO (retries) and DEBUG (every record), and only built when that level is on.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from .redact import redact_text

__all__ = ["EVENT_FIELDS", "configure", "settings"]

_settings = ("warning", "text")

#: Fields that per-request log events carry (as ``extra=``), copied into JSON logs.
EVENT_FIELDS = ("url", "attempt", "kind", "status", "elapsed_ms", "delay")


class TextFormatter(logging.Formatter):
    """The usual text line, with URL credentials taken out."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text: str = super().format(record)
        return redact_text(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the event fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        for name in EVENT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = redact_text(value) if isinstance(value, str) else value
        if record.exc_info:
            data["traceback"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


def configure(level: str = "warning", fmt: str = "text") -> None:
    """Send surefetch's logs to stderr at ``level``, as ``text`` or ``json``."""
    global _settings
    _settings = (level, fmt)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("surefetch")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def settings() -> tuple[str, str]:
    """The (level, format) last given to :func:`configure`, for worker processes."""
    return _settings
