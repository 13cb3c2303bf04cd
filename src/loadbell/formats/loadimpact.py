"""The k6/LoadImpact webhook format (seed 000) and its older dialect (seed 002).

Headers: ``X-LoadImpact-ID`` (the delivery id, the same on every retry),
``X-LoadImpact-Event`` and a ``User-Agent`` starting with ``LoadImpactWebHook``.
The body of ``test.started``/``test.finished`` has exactly nine keys; the test hook's is
exactly ``{"event": "test.notification_channel"}``.
"""

from __future__ import annotations

from typing import Any

import orjson

from loadbell import __version__
from loadbell.domain.events import EventType
from loadbell.domain.statuses import RunResult, RunStatus, legacy_status
from loadbell.values import Message

USER_AGENT = f"LoadImpactWebHook (loadbell/{__version__})"

EVENTS = frozenset(
    {EventType.TEST_STARTED, EventType.TEST_FINISHED, EventType.TEST_NOTIFICATION_CHANNEL}
)

# Header names the format owns; custom headers may not replace them.
RESERVED_HEADERS = frozenset({"x-loadimpact-id", "x-loadimpact-event", "user-agent"})


_STATUSES = {int(s): s for s in RunStatus}  # RunStatus(code) is a slow call, once per delivery


class FormatError(ValueError):
    pass


def headers(message: Message) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-LoadImpact-ID": message.delivery_id,
        "X-LoadImpact-Event": message.event_type.value,
        "User-Agent": USER_AGENT,
    }


def body(message: Message, *, legacy: bool) -> dict[str, Any]:
    if message.event_type is EventType.TEST_NOTIFICATION_CHANNEL:
        return {"event": EventType.TEST_NOTIFICATION_CHANNEL.value}
    if message.event_type not in EVENTS:
        raise FormatError(f"the loadimpact format cannot express {message.event_type.value}")
    ctx = message.context
    run = ctx["run"]
    status = _STATUSES.get(run["status"]) or RunStatus(run["status"])
    if legacy:
        result = RunResult(run["result"]) if run.get("result") else None
        code, text = legacy_status(status, result)
    else:
        code, text = int(status), status.text
    return {
        "status": code,
        "status_text": text,
        "user_id": int(run["user_id"]),
        "name": ctx["load_test"]["name"],
        "organization_id": int(ctx["organization"]["id"]),
        "load_test_id": int(ctx["load_test"]["id"]),
        "load_test_run_id": int(run["id"]),
        "project_id": int(ctx["project"]["id"]),
        "event": message.event_type.value,
    }


def encode(message: Message, *, legacy: bool) -> bytes:
    return orjson.dumps(body(message, legacy=legacy))
