"""The Grafana Cloud k6 webhook format (``k6cloud``) and Grafana's template context.

Headers (Grafana's "Notification message format"): ``X-k6cloud-ID`` (the delivery id: unique
per delivery, the same on every retry), ``X-k6cloud-Event`` (the full identifier of
``domain/k6cloud.py``, e.g. ``test.finished.failed``) and a ``User-Agent`` that starts with
``K6CloudWebHook``.

The body is what Grafana's default "Generic" template renders: ``text``, ``test_run`` (13
keys), ``event`` (id, type, text), ``status``, ``status_text``, ``result``, ``result_text``,
``color`` and ``errors``. docs/wire-formats.md shows it; docs/decisions.md says which parts
Grafana's pages show and which loadbell completed from the template context's table.

:func:`grafana_context` is that context (``test``, ``user``, ``event``, ``errors``), for this
body and for the ``template`` format, so templates copied from Grafana render as they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from loadbell import __version__
from loadbell.domain import k6cloud
from loadbell.domain.events import EventType
from loadbell.domain.statuses import RunResult, RunStatus, Trigger
from loadbell.formats import samples
from loadbell.values import Message

USER_AGENT = f"K6CloudWebHook (loadbell/{__version__})"

EVENTS = frozenset(
    {EventType.TEST_STARTED, EventType.TEST_FINISHED, EventType.TEST_NOTIFICATION_CHANNEL}
)

# Header names the format owns; custom headers may not replace them.
RESERVED_HEADERS = frozenset({"x-k6cloud-id", "x-k6cloud-event", "user-agent"})

# Grafana's text of its default template, kept: a receiver written against Grafana may look.
GENERIC_TEXT = "k6.io example webhook template"

# A Gravatar link for every user: loadbell keeps no avatar, and Grafana's Slack template
# needs an image URL. "mp" is Gravatar's plain silhouette, forced with f=y.
AVATAR = "https://www.gravatar.com/avatar/?d=mp&f=y"


_STATUSES = {int(s): s for s in RunStatus}  # RunStatus(code) is a slow call, once per delivery


class FormatError(ValueError):
    pass


def event_name(message: Message) -> str:
    """The full identifier of this delivery's event, or ``<any>`` for the test hook (what
    Grafana's context says when no event is specified)."""
    if message.event_type is EventType.TEST_NOTIFICATION_CHANNEL:
        return k6cloud.ANY_EVENT
    run = message.context.get("run") or {}
    name = k6cloud.identifier_for(
        message.event_type, run.get("trigger"), run.get("status"), run.get("result")
    )
    return name if name is not None else message.event_type.value


def headers(message: Message) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-k6cloud-ID": message.delivery_id,
        "X-k6cloud-Event": event_name(message),
        "User-Agent": USER_AGENT,
    }


def _event(message: Message) -> dict[str, str]:
    name = event_name(message)
    known = k6cloud.IDENTIFIERS.get(name)
    if known is not None:
        text = known.title
    elif name == k6cloud.ANY_EVENT:
        text = k6cloud.ANY_EVENT_TEXT
    else:  # a loadbell event Grafana has no identifier for (template channels only)
        text = message.event_type.value.replace(".", " ").replace("_", " ").capitalize()
    # "Unique hash for this event": the same for every delivery and retry of one event.
    digest = hashlib.sha256(f"{message.public_url}|event|{message.event_id}".encode())
    return {"id": digest.hexdigest()[:32], "type": name, "text": text}


def _test(ctx: Mapping[str, Any], public_url: str) -> dict[str, Any]:
    run = ctx["run"]
    project = ctx.get("project") or {}
    load_test = ctx.get("load_test") or {}
    status = int(run["status"])
    failed = run.get("result") == RunResult.FAILED
    known = _STATUSES.get(status)
    return {
        "organization_id": int((ctx.get("organization") or {}).get("id", 0)),
        "project_id": int(project.get("id", 0)),
        "id": int(run["id"]),
        "url": str(run.get("url") or ""),
        "load_test_id": int(load_test.get("id", 0)),
        # loadbell has no page per load test; its project's runs list is the nearest.
        "load_test_url": f"{public_url.rstrip('/')}/projects/{int(project.get('id', 0))}/runs",
        "name": str(load_test.get("name", "")),
        "was_scheduled": 1 if run.get("trigger") == Trigger.SCHEDULED else 0,
        "started": str(run.get("started_at") or ""),
        "ended": str(run.get("ended_at") or ""),
        "status": status,
        "status_text": str(run.get("status_text") or (known.text if known else "")),
        "result": 1 if failed else 0,
        "result_text": "Failed" if failed else "Passed",
    }


def grafana_context(message: Message) -> dict[str, Any]:
    """Grafana's template context: ``test``, ``user``, ``event`` and ``errors``.

    The test hook has no run: like Grafana's "Send test event", it gets made-up values
    (the sample run of ``formats/samples.py``, in the caller's organization and project).
    Other events without a run have ``test`` and ``user`` None. loadbell records no error
    objects for a run, so ``errors`` is always empty.
    """
    ctx = message.context
    if ctx.get("run") is None and message.event_type is EventType.TEST_NOTIFICATION_CHANNEL:
        ctx = samples.sample_context(
            EventType.TEST_FINISHED,
            organization=ctx.get("organization") or None,
            project=ctx.get("project") or None,
            public_url=message.public_url,
        )
    run = ctx.get("run")
    test = _test(ctx, message.public_url) if run else None
    user = (
        {
            "id": int(run.get("user_id") or 0),
            "name": str(run.get("user_name") or ""),
            "avatar": AVATAR,
        }
        if run
        else None
    )
    return {"test": test, "user": user, "event": _event(message), "errors": []}


def body(message: Message) -> dict[str, Any]:
    """What Grafana's Generic template renders for this message, as a JSON document."""
    if message.event_type not in EVENTS:
        raise FormatError(f"the k6cloud format cannot express {message.event_type.value}")
    g = grafana_context(message)
    test, user = g["test"], g["user"]
    return {
        "text": GENERIC_TEXT,
        "test_run": {
            "name": test["name"],
            "id": test["id"],
            "link": test["url"],
            "load_test_id": test["load_test_id"],
            "load_test_link": test["load_test_url"],
            "project_id": test["project_id"],
            "organization_id": test["organization_id"],
            "user_id": user["id"],
            "user_name": user["name"],
            "user_avatar": user["avatar"],
            "was_scheduled": "yes" if test["was_scheduled"] else "no",
            "test_started": test["started"],
            "test_ended": test["ended"],
        },
        "event": g["event"],
        "status": test["status"],
        "status_text": test["status_text"],
        "result": test["result"],
        "result_text": test["result_text"],
        "color": "red" if test["result"] == 1 else "green",
        "errors": [
            {"code": e["code"], "error_created": e["created"], "error_detail": e["detail"]}
            for e in g["errors"]
        ],
    }


def encode(message: Message, config: Mapping[str, Any]) -> bytes:
    return orjson.dumps(body(message))
