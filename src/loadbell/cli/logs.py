"""Log lines on stderr, as text or as one JSON object per line (``LOADBELL_LOG_FORMAT``).

Configured once, at start-up, by :func:`configure` (``make_settings`` calls it with the
command's settings), on the root logger: uvicorn's loggers propagate to it too (``serve``
passes ``log_config=None``), so every line of a process has the same form.

A JSON line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, then the
fields the line was logged with (``extra=``: ``delivery_id``, ``channel_id``, ``attempt``,
``outcome``...), the ``request_id`` of the HTTP request being handled, if any, and the
``exception`` text. No dependency: a ``logging.Formatter`` subclass.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from loadbell.api.request_context import request_id

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has; anything else on a record was passed as a field (extra=).
# uvicorn's ``color_message`` is the message again, with terminal colours.
_NOT_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "color_message", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ident = request_id()
        if ident is not None:
            doc["request_id"] = ident
        for key, value in record.__dict__.items():
            if key not in _NOT_FIELDS and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        # default=str: a field of another type (a datetime, a path) is written as its text.
        return json.dumps(doc, default=str, ensure_ascii=False)


def configure(log_format: str) -> None:
    """Send every log line at INFO and above to stderr in ``log_format`` (text or json),
    replacing whatever was configured before."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)
