"""The Loadmance webhook format (seed 004): every event type, compared with a file."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from loadbell import __version__
from loadbell.channels.webhook import WebhookKind
from loadbell.domain.events import EventType
from loadbell.formats import loadmance
from loadbell.testing import Received, RecordingReceiver
from loadbell.values import ConfigError, Message

EXPECTED = Path(__file__).parent / "expected" / "loadmance"
WHEN = datetime(2025, 7, 3, 14, 35, 0, tzinfo=UTC)
ENVELOPE = ["type", "source", "eventType", "title", "message", "timestamp", "metadata", "severity"]

FULL_METRICS: dict[str, Any] = {
    "requests": 1500015000,
    "rps": 50.24,
    "avg_ms": 245.66,
    "p95_ms": 480.0,
    "error_rate": 0.06,
    "apdex": 0.849,
    "vus_max": 3,
    "duration_s": 15.2,
    "thresholds": [
        {"metric": "http_req_duration", "expression": "p(95)<500", "ok": True},
        {"metric": "http_req_failed", "expression": "rate<0.05", "ok": False},
        {"metric": "checks", "expression": "rate>0.99", "ok": False},
    ],
}


def _run(
    status: int,
    status_text: str,
    result: str | None,
    metrics: dict[str, Any],
    duration_s: float | None,
) -> dict[str, Any]:
    return {
        "id": 1234567890,
        "status": status,
        "status_text": status_text,
        "result": result,
        "trigger": "manual",
        "user_id": 11,
        "user_name": "owner",
        "created_at": "2025-07-03T14:29:50+00:00",
        "started_at": "2025-07-03T14:30:00+00:00" if duration_s is not None else None,
        "ended_at": None,
        "duration_s": duration_s,
        "metrics": metrics,
        "url": "http://loadbell.test/runs/1234567890",
    }


def _context(
    *, load_test: bool = True, run: dict[str, Any] | None = None, extra: Any = None
) -> dict[str, Any]:
    return {
        "organization": {"id": 1, "name": "Acme"},
        "project": {"id": 12345, "name": "E-commerce Platform"},
        "load_test": {"id": 9876543210, "name": "API Stress Test"} if load_test else None,
        "run": run,
        "extra": extra or {},
    }


def _passed_metrics() -> dict[str, Any]:
    return {**FULL_METRICS, "thresholds": FULL_METRICS["thresholds"][:1]}


CASES: list[tuple[str, EventType, dict[str, Any]]] = [
    # Running, with the planned duration and users the integration reported at start.
    (
        "test.started",
        EventType.TEST_STARTED,
        _context(run=_run(2, "Running", None, {"vus_max": 100, "duration_s": 300.0}, None)),
    ),
    # Running before any figure arrived: the keys stay, the values are "".
    (
        "test.started-no-figures",
        EventType.TEST_STARTED,
        _context(run=_run(2, "Running", None, {}, None)),
    ),
    # Finished and passed: the only TEST_FINISH.
    (
        "test.finished-passed",
        EventType.TEST_FINISHED,
        _context(run=_run(3, "Finished", "passed", _passed_metrics(), 10.4)),
    ),
    # Finished with a failed result (thresholds): TEST_FAILED naming the failed thresholds.
    (
        "test.finished-failed",
        EventType.TEST_FINISHED,
        _context(run=_run(3, "Finished", "failed", FULL_METRICS, 10.4)),
    ),
    # Aborted by the user part-way: TEST_FAILED with the figures known so far.
    (
        "test.finished-aborted",
        EventType.TEST_FINISHED,
        _context(
            run=_run(
                5,
                "Aborted by user",
                "failed",
                {"requests": 7500, "error_rate": 0.0, "avg_ms": 3200.5, "duration_s": 150.0},
                151.0,
            )
        ),
    ),
    # Timed out before running and before any figure: every figure is "".
    (
        "test.finished-timed-out",
        EventType.TEST_FINISHED,
        _context(run=_run(4, "Timed out", "failed", {}, None)),
    ),
    # A threshold crossed during the run: our own event type, severity warning.
    (
        "test.threshold_failed",
        EventType.TEST_THRESHOLD_FAILED,
        _context(
            run=_run(2, "Running", None, {"requests": 700}, None),
            extra={
                "threshold": {
                    "metric": "http_req_duration",
                    "expression": "p(95)<500",
                    "ok": False,
                    "value": 612.5,
                    "severity": "warning",
                }
            },
        ),
    ),
    # Slower than the baseline run: our own event type, severity warning; what regressed,
    # as text and as the figures' names.
    (
        "test.regressed",
        EventType.TEST_REGRESSED,
        _context(
            run={
                **_run(3, "Finished", "passed", _passed_metrics(), 10.4),
                "comparison": {
                    "baseline_run_id": 1234567001,
                    "figures": {
                        "p95_ms": {
                            "value": 480.0,
                            "baseline": 390.0,
                            "change_pct": 23.1,
                            "regressed": True,
                        },
                        "avg_ms": {
                            "value": 245.66,
                            "baseline": 230.0,
                            "change_pct": 6.8,
                            "regressed": False,
                        },
                        "error_rate": {
                            "value": 0.06,
                            "baseline": 0.01,
                            "change_pct": 500.0,
                            "regressed": True,
                        },
                    },
                    "regressed": True,
                },
            }
        ),
    ),
    ("load_test.created", EventType.LOAD_TEST_CREATED, _context()),
    # A rename: the title is the new name, the message says the old one.
    (
        "load_test.updated",
        EventType.LOAD_TEST_UPDATED,
        _context(extra={"changes": {"name": ["API Load Test", "API Stress Test"]}}),
    ),
    ("load_test.deleted", EventType.LOAD_TEST_DELETED, _context()),
    ("project.created", EventType.PROJECT_CREATED, _context(load_test=False)),
    (
        "project.updated",
        EventType.PROJECT_UPDATED,
        _context(
            load_test=False, extra={"changes": {"name": ["E-commerce", "E-commerce Platform"]}}
        ),
    ),
    ("project.deleted", EventType.PROJECT_DELETED, _context(load_test=False)),
    # The test hook (POST /channels/{id}/test).
    ("test.notification_channel", EventType.TEST_NOTIFICATION_CHANNEL, _context(load_test=False)),
    # Another channel of the organization was disabled for failing (ours, not the seed's).
    (
        "channel.disabled",
        EventType.CHANNEL_DISABLED,
        {
            **_context(load_test=False),
            "project": None,
            "channel": {
                "id": 12,
                "name": "ops webhook",
                "kind": "webhook",
                "project_id": None,
                "consecutive_failures": 20,
                "disabled_reason": "disabled after 20 consecutive failed deliveries since "
                "2025-07-02 14:00 UTC",
                "url": "http://loadbell.test/channels/12",
            },
        },
    ),
]


def _message(event: EventType, context: dict[str, Any], when: datetime = WHEN) -> Message:
    return Message(
        delivery_id="19c5d426-3b4d-43c3-8277-37ad7d457430",
        event_id=7,
        event_type=event,
        occurred_at=when,
        context=context,
        public_url="http://loadbell.test",
    )


def _config(**extra: Any) -> dict[str, Any]:
    return WebhookKind().validate(
        {"url": "http://127.0.0.1:9/hook", "format": "loadmance", **extra}
    )


@pytest.mark.parametrize(("name", "event", "context"), CASES, ids=[c[0] for c in CASES])
def test_body_matches_expected_file(name: str, event: EventType, context: dict[str, Any]) -> None:
    """The rendered body equals the expected file, key order included."""
    request = WebhookKind().render(_message(event, context), _config())
    expected = json.loads((EXPECTED / f"{name}.json").read_text())
    body = orjson.loads(request.body)
    assert list(body) == ENVELOPE
    assert body == expected
    assert list(body["metadata"]) == list(expected["metadata"])


@pytest.mark.parametrize(("name", "event", "context"), CASES, ids=[c[0] for c in CASES])
def test_envelope_rules_hold(name: str, event: EventType, context: dict[str, Any]) -> None:
    """Every metadata value is a string and severity is one of the four lower-case levels."""
    body = loadmance.body(_message(event, context))
    assert body["type"] == "notification"
    assert all(isinstance(v, str) for v in body["metadata"].values())
    assert body["severity"] in {"info", "success", "warning", "error"}


def test_all_nine_seed_event_types_are_covered() -> None:
    """The table reaches each of the seed's nine event types at least once."""
    seen = {loadmance.body(_message(e, c))["eventType"] for _, e, c in CASES}
    assert {
        "TEST_STARTED",
        "TEST_FINISH",
        "TEST_FAILED",
        "TEST_BUILDER_CREATED",
        "TEST_BUILDER_UPDATED",
        "TEST_BUILDER_DELETED",
        "PROJECT_CREATED",
        "PROJECT_UPDATED",
        "PROJECT_DELETED",
    } <= seen


def test_odd_figures_are_unknown_and_the_key_set_stays() -> None:
    """A figure that is no number reads as one not reported ("") with every key kept; the
    other figures read as before; thresholds that are no object are not named."""
    odd = {"rps": "fast", "avg_ms": None, "apdex": float("nan"), "requests": True}
    passed = _run(3, "Finished", "passed", {**_passed_metrics(), **odd}, 10.4)
    body = loadmance.body(_message(EventType.TEST_FINISHED, _context(run=passed)))
    expected = json.loads((EXPECTED / "test.finished-passed.json").read_text())["metadata"]
    assert body["metadata"] == {
        **expected,
        "throughput": "",
        "avgResponseTime": "",
        "apdexScore": "",
        "totalRequestCount": "",
    }
    failed = _run(3, "Finished", "failed", {"thresholds": ["x", {"ok": False}]}, 10.4)
    body = loadmance.body(_message(EventType.TEST_FINISHED, _context(run=failed)))
    assert body["message"].endswith("1 of 1 thresholds failed (? ?).")


def test_a_threshold_value_that_is_no_finite_number_is_unknown() -> None:
    """A crossed threshold's NaN value is "", never the text 'nan'."""
    context = copy.deepcopy(next(c for n, _, c in CASES if n == "test.threshold_failed"))
    context["extra"]["threshold"]["value"] = float("nan")
    body = loadmance.body(_message(EventType.TEST_THRESHOLD_FAILED, context))
    assert body["metadata"]["value"] == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (57.129579199999995, "57.13"),  # a p95 in ms, as k6 computes it: two decimals
        (612.5, "612.5"),  # trailing zeros dropped
        (500.0, "500"),  # a whole figure reads whole
        (1500, "1500"),  # an integer as given
        (0.0123456, "0.0123"),  # a rate below 1: three significant digits, not 0.01
        (0.5, "0.5"),
        (0, "0"),
        (-3.14159, "-3.14"),
        ("57.1", ""),  # no number: unknown
    ],
)
def test_a_threshold_value_is_rounded_for_people(value: object, expected: str) -> None:
    """A crossed threshold's value is a figure people read, rounded (D54)."""
    context = copy.deepcopy(next(c for n, _, c in CASES if n == "test.threshold_failed"))
    context["extra"]["threshold"]["value"] = value
    body = loadmance.body(_message(EventType.TEST_THRESHOLD_FAILED, context))
    assert body["metadata"]["value"] == expected


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (WHEN, "2025-07-03T14:35:00"),  # UTC as is
        # +02:00 with microseconds: converted to UTC, fraction dropped
        (
            datetime(2025, 7, 3, 16, 35, 0, 987, tzinfo=timezone(timedelta(hours=2))),
            "2025-07-03T14:35:00",
        ),
        (datetime(2025, 7, 3, 14, 35, 0), "2025-07-03T14:35:00"),  # naive: taken as UTC
    ],
)
def test_timestamp_is_utc_without_fraction_or_offset(when: datetime, expected: str) -> None:
    """The timestamp is the event's time in UTC, YYYY-MM-DDTHH:MM:SS."""
    assert loadmance.timestamp(when) == expected


def test_source_is_configurable() -> None:
    """config.source replaces the default source 'loadbell'."""
    context = CASES[0][2]
    default = orjson.loads(
        WebhookKind().render(_message(EventType.TEST_STARTED, context), _config()).body
    )
    custom = WebhookKind().render(
        _message(EventType.TEST_STARTED, context), _config(source="perf-lab")
    )
    assert default["source"] == "loadbell"
    assert orjson.loads(custom.body)["source"] == "perf-lab"


@pytest.mark.parametrize("source", ["", "   ", "a\nb", "x" * 101, 5])
def test_bad_source_is_refused(source: Any) -> None:
    """A blank, multi-line, over-long or non-string source is a config error."""
    with pytest.raises(ConfigError) as info:
        _config(source=source)
    assert info.value.field == "config.source"


def test_headers_are_json_plus_custom_headers() -> None:
    """Content-Type is application/json; custom headers are added and kept secret."""
    request = WebhookKind().render(
        _message(*CASES[0][1:]), _config(headers={"X-Api-Key": "k", "User-Agent": "mine"})
    )
    assert request.headers == {
        "Content-Type": "application/json",
        "X-Api-Key": "k",
        "User-Agent": "mine",
    }
    assert request.secret_headers == frozenset({"X-Api-Key", "User-Agent"})
    default = WebhookKind().render(_message(*CASES[0][1:]), _config())
    assert default.headers == {
        "Content-Type": "application/json",
        "User-Agent": f"loadbell/{__version__}",
    }


@pytest.mark.parametrize(
    "event",
    [
        EventType.TEST_STARTING,  # the seed starts at "begins execution" (Running)
        EventType.TEST_REPORT_INTERMEDIATE,
        EventType.TEST_REPORT_AVAILABLE,
    ],
)
def test_events_without_a_loadmance_type_are_not_offered(event: EventType) -> None:
    """Events the seed has no type for cannot be subscribed to, and are refused if forced."""
    assert event not in WebhookKind().events(_config())
    with pytest.raises(loadmance.FormatError, match=event.value):
        loadmance.body(_message(event, _context()))


async def test_delivered_end_to_end_with_headers_and_event_selection(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """Through the server: a run's selected events arrive as the Loadmance envelope with
    Content-Type and the custom headers, and the unselected ones are never sent (a second
    channel subscribed to everything shows they happened)."""
    selected = {
        "organization_id": 1,
        "kind": "webhook",
        "name": "loadmance",
        "config": {
            "url": f"{receiver.url}/selected",
            "format": "loadmance",
            "source": "perf-lab",
            "headers": {"X-Api-Key": "k-123", "X-Team": "perf"},
        },
        "events": ["test.started", "test.finished"],
    }
    r = await api.post("/channels", json=selected)
    assert r.status_code == 201, r.text
    channel_id = r.json()["id"]
    catch_all = {**selected, "config": {"url": f"{receiver.url}/all", "format": "loadmance"}}
    r = await api.post("/channels", json={**catch_all, "events": None})
    assert r.status_code == 201, r.text

    r = await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})
    assert r.status_code == 201, r.text  # also load_test.created: not selected
    run_id = r.json()["id"]
    r = await api.patch(
        f"/runs/{run_id}", json={"status": 2, "metrics": {"vus_max": 20, "duration_s": 60}}
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        f"/runs/{run_id}/threshold-failures",
        json={"metric": "http_req_duration", "expression": "p(95)<500", "value": 612.5},
    )
    assert r.status_code == 201, r.text  # test.threshold_failed: not selected
    final = {"requests": 1200, "rps": 20.04, "avg_ms": 98.76, "apdex": 0.951, "vus_max": 20}
    r = await api.patch(
        f"/runs/{run_id}",
        json={"status": 3, "result": "passed", "metrics": {**final, "duration_s": 60}},
    )
    assert r.status_code == 200, r.text

    def at(path: str) -> list[Received]:
        return [got for got in receiver.requests if got.path == path]

    deadline = time.monotonic() + 15
    while len(at("/all")) < 4 or len(at("/selected")) < 2:
        assert time.monotonic() < deadline, [(g.path, g.json()) for g in receiver.requests]
        await asyncio.sleep(0.05)
    arrived = [g.json()["eventType"] for g in at("/all")]
    # The run's events are one ordered sequence; the load test's creation is not part of it
    # and may go out concurrently with the first of them.
    assert sorted(arrived) == sorted(
        ["TEST_BUILDER_CREATED", "TEST_STARTED", "TEST_THRESHOLD_EXCEEDED", "TEST_FINISH"]
    )
    assert [t for t in arrived if t != "TEST_BUILDER_CREATED"] == [
        "TEST_STARTED",
        "TEST_THRESHOLD_EXCEEDED",
        "TEST_FINISH",
    ]
    deliveries = (await api.get("/deliveries", params={"channel_id": channel_id})).json()
    assert sorted(d["event_type"] for d in deliveries["items"]) == [
        "test.finished",
        "test.started",
    ]

    started, finished = at("/selected")
    link = f"http://loadbell.test/runs/{run_id}"
    subject = "Load test 'checkout' in project 'Default Project'"
    for got in (started, finished):
        assert got.method == "POST"
        assert got.header("Content-Type") == "application/json"
        assert got.header("X-Api-Key") == "k-123" and got.header("X-Team") == "perf"
        assert got.header("User-Agent") == f"loadbell/{__version__}"
        assert not [h for h in got.headers if h.lower().startswith(("x-loadimpact", "webhook-"))]
        body = got.json()
        assert list(body) == ENVELOPE
        when = datetime.strptime(body.pop("timestamp"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        assert abs(datetime.now(UTC) - when) < timedelta(minutes=1)
        if got is started:
            assert body == {
                "type": "notification",
                "source": "perf-lab",
                "eventType": "TEST_STARTED",
                "title": "Load Test Started",
                "message": f"{subject} has begun execution.",
                "metadata": {
                    "testRunId": str(run_id),
                    "maxUser": "20",
                    "duration": "60",
                    "watchLive": link,
                },
                "severity": "info",
            }
        else:
            running = body["metadata"].pop("runningTime")
            assert running.isdigit()  # wall seconds from Running to the end
            assert body == {
                "type": "notification",
                "source": "perf-lab",
                "eventType": "TEST_FINISH",
                "title": "Load Test Completed",
                "message": f"{subject} has finished successfully.",
                "metadata": {
                    "testRunId": str(run_id),
                    "status": "FINISHED",
                    "duration": "60",
                    "maxUser": "20",
                    "totalRequestCount": "1200",
                    "avgResponseTime": "98.8",
                    "throughput": "20.0",
                    "apdexScore": "0.95",
                    "reportLink": link,
                },
                "severity": "success",
            }
