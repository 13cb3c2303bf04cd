"""The k6/LoadImpact webhook formats (seed 000 and seed 002), byte for byte."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from loadbell import __version__
from loadbell.channels.webhook import WebhookKind
from loadbell.domain.events import EventType
from loadbell.formats import loadimpact
from loadbell.values import Message

EXPECTED = Path(__file__).parent / "expected"
DELIVERY_ID = "19c5d426-3b4d-43c3-8277-37ad7d457430"
NINE_KEYS = [
    "status",
    "status_text",
    "user_id",
    "name",
    "organization_id",
    "load_test_id",
    "load_test_run_id",
    "project_id",
    "event",
]


def _context(status: int, result: str | None) -> dict[str, Any]:
    # Distinct ids so that a swapped field shows up as a mismatch.
    return {
        "organization": {"id": 1, "name": "Default Organization"},
        "project": {"id": 5, "name": "Shop"},
        "load_test": {"id": 3, "name": "checkout"},
        "run": {
            "id": 42,
            "status": status,
            "status_text": "ignored: the format looks the text up itself",
            "result": result,
            "trigger": "manual",
            "user_id": 11,
            "user_name": "owner",
            "created_at": "2024-05-01T10:00:00+00:00",
            "started_at": "2024-05-01T10:00:05+00:00",
            "ended_at": None,
            "duration_s": None,
            "metrics": {"requests": 1500, "rps": 50.2},
            "url": "http://loadbell.test/runs/42",
        },
        "extra": {},
    }


def _message(event: EventType, status: int = 2, result: str | None = None) -> Message:
    context = (
        _context(status, result)
        if event is not EventType.TEST_NOTIFICATION_CHANNEL
        else {"organization": {"id": 1, "name": "Default Organization"}, "run": None}
    )
    return Message(
        delivery_id=DELIVERY_ID,
        event_id=7,
        event_type=event,
        occurred_at=datetime(2024, 5, 1, 10, 0, 5, tzinfo=UTC),
        context=context,
        public_url="http://loadbell.test",
    )


CASES = [
    # (expected file, event, run status, run result)
    ("test.started", EventType.TEST_STARTED, 2, None),  # seed 000's started example
    ("test.finished-passed", EventType.TEST_FINISHED, 3, "passed"),  # seed 000's example
    ("test.finished-failed", EventType.TEST_FINISHED, 3, "failed"),  # legacy: 12
    ("test.finished-aborted", EventType.TEST_FINISHED, 5, "failed"),  # legacy: 6
    ("test.notification_channel", EventType.TEST_NOTIFICATION_CHANNEL, 0, None),  # test hook
]


def _expected(fmt: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXPECTED / fmt / f"{name}.json").read_text())
    doc["headers"]["User-Agent"] = doc["headers"]["User-Agent"].format(version=__version__)
    return doc


@pytest.mark.parametrize("fmt", ["loadimpact", "loadimpact-legacy"])
@pytest.mark.parametrize(("name", "event", "status", "result"), CASES)
def test_rendered_request_matches_expected_file(
    fmt: str, name: str, event: EventType, status: int, result: str | None
) -> None:
    """The webhook kind renders exactly the headers (in order) and body of the expected file."""
    config = {"url": "http://127.0.0.1:9/hook", "format": fmt, "headers": {"X-Token": "s3cret"}}
    request = WebhookKind().render(_message(event, status, result), config)
    expected = _expected(fmt, name)

    assert request.method == "POST"
    assert request.url == "http://127.0.0.1:9/hook"
    assert list(request.headers.items()) == list(expected["headers"].items())
    assert request.secret_headers == frozenset({"X-Token"})
    body = orjson.loads(request.body)
    assert list(body.items()) == list(expected["body"].items())


@pytest.mark.parametrize("fmt", ["loadimpact", "loadimpact-legacy"])
@pytest.mark.parametrize(("name", "event", "status", "result"), CASES[:4])
def test_run_bodies_have_exactly_nine_integer_keys(
    fmt: str, name: str, event: EventType, status: int, result: str | None
) -> None:
    """started/finished bodies carry the nine seed 000 keys, numbers as JSON integers."""
    raw = loadimpact.encode(_message(event, status, result), legacy=fmt.endswith("legacy"))
    body = orjson.loads(raw)
    assert list(body) == NINE_KEYS
    for key in NINE_KEYS:
        if key in ("status_text", "name", "event"):
            assert type(body[key]) is str, key
        else:
            assert type(body[key]) is int, key
    # Integers on the wire, not 2.0 or "2".
    assert b'"status":' in raw and b'"status":"' not in raw and b".0," not in raw


@pytest.mark.parametrize("legacy", [False, True])
def test_test_hook_body_is_exact(legacy: bool) -> None:
    """The test hook's body is exactly {"event": "test.notification_channel"}."""
    raw = loadimpact.encode(_message(EventType.TEST_NOTIFICATION_CHANNEL), legacy=legacy)
    assert orjson.loads(raw) == {"event": "test.notification_channel"}


def test_headers_carry_the_delivery_id() -> None:
    """X-LoadImpact-ID is the delivery's id and the User-Agent starts with LoadImpactWebHook."""
    other = "5a1f0c1e-0000-4000-8000-000000000001"
    message = Message(
        delivery_id=other,
        event_id=1,
        event_type=EventType.TEST_STARTED,
        occurred_at=datetime.now(UTC),
        context=_context(2, None),
        public_url="http://loadbell.test",
    )
    headers = loadimpact.headers(message)
    assert headers["X-LoadImpact-ID"] == other
    assert headers["X-LoadImpact-Event"] == "test.started"
    assert headers["User-Agent"].startswith("LoadImpactWebHook")


@pytest.mark.parametrize(
    "event",
    [
        EventType.TEST_STARTING,  # XTC's "Start": not in seed 000
        EventType.PROJECT_CREATED,  # seed 004 only
        EventType.TEST_REPORT_AVAILABLE,
    ],
)
def test_events_outside_seed_000_are_refused(event: EventType) -> None:
    """The format refuses to invent a body for an event seed 000 does not define."""
    assert event not in loadimpact.EVENTS
    with pytest.raises(loadimpact.FormatError, match=event.value):
        loadimpact.body(_message(event), legacy=False)


@pytest.mark.parametrize("name", ["X-LoadImpact-ID", "user-agent", "Content-Type", "Host"])
def test_custom_headers_cannot_replace_format_headers(name: str) -> None:
    """A channel's custom header may not override a header the format or transport owns."""
    from loadbell.values import ConfigError

    with pytest.raises(ConfigError) as info:
        WebhookKind().validate({"url": "http://127.0.0.1:9/", "headers": {name: "x"}})
    assert info.value.field == f"config.headers.{name}"
