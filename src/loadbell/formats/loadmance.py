"""The Loadmance webhook format (seed 004).

One JSON envelope for every event, keys in the seed's order::

    {"type": "notification", "source": "loadbell", "eventType": "TEST_FINISH",
     "title": "Load Test Completed", "message": "...", "timestamp": "2025-07-03T14:35:00",
     "metadata": {"testRunId": "4217", ...}, "severity": "success"}

Choices where the seed is silent or contradicts itself (docs/channels.md explains each):

- ``timestamp`` is when the event happened, in UTC, ``YYYY-MM-DDTHH:MM:SS``.
- ``severity`` is lower-case, as in the seed's examples (its level list is upper-case).
- ``metadata.status`` of ``TEST_FINISH`` is ``FINISHED`` (the field list's value; the
  example's ``FINISH`` repeats the event type's spelling).
- Every metadata key the seed lists for an event type is always present; a figure loadbell
  does not know is ``""``, so receivers can rely on a fixed key set. A figure the client
  sent as something other than a number is not known either (``domain.metrics.readable``).
- ``test.finished`` becomes ``TEST_FINISH`` only when the run finished and passed; every
  other end (failed result, timeout, any abort) is ``TEST_FAILED``.
- ``test.threshold_failed`` becomes ``TEST_THRESHOLD_EXCEEDED`` (severity ``warning``),
  ``test.regressed`` ``TEST_REGRESSED`` (severity ``warning``), and the test hook
  ``NOTIFICATION_TEST``: the seed has no event types for these three.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from loadbell import __version__
from loadbell.domain import regression
from loadbell.domain.events import EventType
from loadbell.domain.metrics import failed_thresholds, number, readable
from loadbell.domain.statuses import RunStatus
from loadbell.values import Message

DEFAULT_SOURCE = "loadbell"
USER_AGENT = f"loadbell/{__version__}"

EVENTS = frozenset(
    {
        EventType.TEST_STARTED,
        EventType.TEST_FINISHED,
        EventType.TEST_THRESHOLD_FAILED,
        EventType.TEST_REGRESSED,
        EventType.LOAD_TEST_CREATED,
        EventType.LOAD_TEST_UPDATED,
        EventType.LOAD_TEST_DELETED,
        EventType.PROJECT_CREATED,
        EventType.PROJECT_UPDATED,
        EventType.PROJECT_DELETED,
        EventType.TEST_NOTIFICATION_CHANNEL,
        EventType.CHANNEL_DISABLED,
    }
)

# Our CRUD events -> (eventType, title, verb). Titles are the seed's, emoji included.
_CRUD: dict[EventType, tuple[str, str, str]] = {
    EventType.LOAD_TEST_CREATED: ("TEST_BUILDER_CREATED", "Test Builder Created", "created"),
    EventType.LOAD_TEST_UPDATED: ("TEST_BUILDER_UPDATED", "Test Builder Updated", "updated"),
    EventType.LOAD_TEST_DELETED: ("TEST_BUILDER_DELETED", "Test Builder Deleted", "deleted"),
    EventType.PROJECT_CREATED: ("PROJECT_CREATED", "📁 New Project Created", "created"),
    EventType.PROJECT_UPDATED: ("PROJECT_UPDATED", "📝 Project Updated", "updated"),
    EventType.PROJECT_DELETED: ("PROJECT_DELETED", "🗂 Project Deleted", "deleted"),
}


class FormatError(ValueError):
    pass


def headers(message: Message) -> dict[str, str]:
    """The seed's one header. ``User-Agent`` is ours; custom headers may replace it."""
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT}


def timestamp(when: datetime) -> str:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _int(value: Any) -> str:
    return "" if value is None else str(round(float(value)))


def _dec(value: Any, digits: int) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


def _percent(rate: Any) -> str:
    return "" if rate is None else f"{float(rate) * 100:.2f}"


def measured(value: Any) -> str:
    """A measured figure as people read it (D54): two decimals at most, or three
    significant digits below 1 so a small rate keeps its meaning, trailing zeros dropped.
    ``57.129579199999995`` -> ``57.13``, ``0.0123456`` -> ``0.0123``, ``500.0`` -> ``500``;
    ``""`` when it is no finite number."""
    found = number(value)
    if found is None:
        return ""
    if isinstance(found, int) or found == 0:
        return str(int(found))
    digits = 2 if abs(found) >= 1 else min(2 - math.floor(math.log10(abs(found))), 15)
    return f"{found:.{digits}f}".rstrip("0").rstrip(".")


def _subject(ctx: Mapping[str, Any]) -> str:
    test = (ctx.get("load_test") or {}).get("name", "?")
    project = (ctx.get("project") or {}).get("name", "?")
    return f"Load test '{test}' in project '{project}'"


def _max_users(metrics: Mapping[str, Any]) -> str:
    return _int(metrics.get("vus_max", metrics.get("vus")))


def _run_event(message: Message) -> tuple[str, str, str, dict[str, str], str]:
    """(eventType, title, message, metadata, severity) for a run event."""
    ctx = message.context
    run = ctx.get("run") or {}
    metrics = readable(run.get("metrics"))  # an odd figure reads as unknown: ""
    run_id = str(run.get("id", ""))
    url = str(run.get("url") or "")
    subject = _subject(ctx)
    event = message.event_type
    if event is EventType.TEST_STARTED:
        return (
            "TEST_STARTED",
            "Load Test Started",
            f"{subject} has begun execution.",
            {
                "testRunId": run_id,
                "maxUser": _max_users(metrics),
                "duration": _int(metrics.get("duration_s")),
                "watchLive": url,
            },
            "info",
        )
    if event is EventType.TEST_THRESHOLD_FAILED:
        threshold = (ctx.get("extra") or {}).get("threshold") or {}
        metric, expression = threshold.get("metric", "?"), threshold.get("expression", "?")
        return (
            "TEST_THRESHOLD_EXCEEDED",
            "Threshold Exceeded",
            f"{subject} crossed a threshold: {metric} {expression}.",
            {
                "testRunId": run_id,
                "metric": str(metric),
                "threshold": str(expression),
                "value": measured(threshold.get("value")),
                "watchLive": url,
            },
            "warning",
        )
    if event is EventType.TEST_REGRESSED:
        return _regressed(run, run_id, subject, url)
    status = RunStatus(run["status"])
    duration = metrics.get("duration_s", run.get("duration_s"))
    if status is RunStatus.FINISHED and run.get("result") != "failed":
        return (
            "TEST_FINISH",
            "Load Test Completed",
            f"{subject} has finished successfully.",
            {
                "testRunId": run_id,
                "status": "FINISHED",
                "duration": _int(duration),
                "maxUser": _max_users(metrics),
                "totalRequestCount": _int(metrics.get("requests")),
                "avgResponseTime": _dec(metrics.get("avg_ms"), 1),
                "throughput": _dec(metrics.get("rps"), 1),
                "apdexScore": _dec(metrics.get("apdex"), 2),
                "runningTime": _int(run.get("duration_s")),
                "reportLink": url,
            },
            "success",
        )
    if status is RunStatus.FINISHED:
        failed = failed_thresholds(metrics)
        total = len(metrics.get("thresholds", []))
        why = "finished with a failed result"
        if failed:
            names = ", ".join(f"{t['metric']} {t['expression']}" for t in failed)
            why += f": {len(failed)} of {total} thresholds failed ({names})"
    else:
        why = f"stopped: {status.text}"
    return (
        "TEST_FAILED",
        "Load Test Failed",
        f"{subject} {why}.",
        {
            "testRunId": run_id,
            "duration": _int(duration),
            "totalRequestCount": _int(metrics.get("requests")),
            "errorRate": _percent(metrics.get("error_rate")),
            "avgResponseTime": _dec(metrics.get("avg_ms"), 1),
            "runningTime": _int(run.get("duration_s")),
            "failReportLink": url,
        },
        "error",
    )


def _regressed(
    run: Mapping[str, Any], run_id: str, subject: str, url: str
) -> tuple[str, str, str, dict[str, str], str]:
    """``TEST_REGRESSED``: which figures got worse than the baseline run's, as text
    (``p95 312 ms (+22.8 % vs run #41)``) and as the figures' names."""
    comparison = run.get("comparison")
    if not isinstance(comparison, Mapping):
        comparison = {}
    worse = regression.regressed_figures(comparison)
    described = [d for d in (regression.describe(comparison, f) for f in worse) if d]
    baseline = comparison.get("baseline_run_id")
    return (
        "TEST_REGRESSED",
        "Performance Regression",
        f"{subject} regressed against run #{baseline}: {', '.join(described)}.",
        {
            "testRunId": run_id,
            "baselineRunId": "" if baseline is None else str(baseline),
            "regressedMetrics": ",".join(worse),
            "changes": "; ".join(described),
            "reportLink": url,
        },
        "warning",
    )


def _crud_event(message: Message) -> tuple[str, str, str, dict[str, str], str]:
    ctx = message.context
    event_type, title, verb = _CRUD[message.event_type]
    project = ctx.get("project") or {}
    project_name = str(project.get("name", "?"))
    renamed = ((ctx.get("extra") or {}).get("changes") or {}).get("name")
    was = f" (renamed from '{renamed[0]}')" if renamed and len(renamed) == 2 else ""
    if message.event_type.value.startswith("project."):
        return event_type, title, f"Project '{project_name}' has been {verb}{was}.", {}, "info"
    load_test = ctx.get("load_test") or {}
    return (
        event_type,
        title,
        f"Load test '{load_test.get('name', '?')}' in project '{project_name}' "
        f"has been {verb}{was}.",
        {
            "testBuilderId": str(load_test.get("id", "")),
            "testBuilderTitle": str(load_test.get("name", "")),
            "projectId": str(project.get("id", "")),
            "projectName": project_name,
        },
        "info",
    )


def _channel_disabled(message: Message) -> tuple[str, str, str, dict[str, str], str]:
    channel = message.context.get("channel") or {}
    name = str(channel.get("name", "?"))
    reason = str(channel.get("disabled_reason") or "it kept failing")
    return (
        "CHANNEL_DISABLED",
        "Notification Channel Disabled",
        f"Channel '{name}' stopped sending: {reason}.",
        {
            "channelId": str(channel.get("id", "")),
            "channelName": name,
            "channelKind": str(channel.get("kind", "")),
            "consecutiveFailures": str(channel.get("consecutive_failures", "")),
            "channelLink": str(channel.get("url") or ""),
        },
        "error",
    )


def body(message: Message, *, source: str = DEFAULT_SOURCE) -> dict[str, Any]:
    event = message.event_type
    if event not in EVENTS:
        raise FormatError(f"the loadmance format cannot express {event.value}")
    if event is EventType.TEST_NOTIFICATION_CHANNEL:
        parts: tuple[str, str, str, dict[str, str], str] = (
            "NOTIFICATION_TEST",
            "Test Notification",
            "This is a test message from loadbell: the webhook is set up correctly.",
            {},
            "info",
        )
    elif event is EventType.CHANNEL_DISABLED:
        parts = _channel_disabled(message)
    elif event in _CRUD:
        parts = _crud_event(message)
    else:
        parts = _run_event(message)
    event_type, title, text, metadata, severity = parts
    return {
        "type": "notification",
        "source": source,
        "eventType": event_type,
        "title": title,
        "message": text,
        "timestamp": timestamp(message.occurred_at),
        "metadata": metadata,
        "severity": severity,
    }


def encode(message: Message, config: Mapping[str, Any]) -> bytes:
    return orjson.dumps(body(message, source=config.get("source") or DEFAULT_SOURCE))
