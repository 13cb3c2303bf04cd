"""The Grafana Cloud k6 webhook format (``k6cloud``): headers, the Generic body, its schema."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from loadbell.channels.webhook import WebhookKind
from loadbell.domain.events import EventType
from loadbell.formats import k6cloud, template
from loadbell.values import ConfigError, Message

SCHEMA = json.loads((Path(__file__).parents[2] / "src/loadbell/schemas/k6cloud.json").read_text())
GENERIC = (Path(__file__).parent / "grafana" / "generic.json.j2").read_text()
DELIVERY_ID = "19c5d426-3b4d-43c3-8277-37ad7d457430"  # Grafana's header example's ID


def _message(
    event: EventType,
    status: int = 2,
    result: str | None = None,
    trigger: str = "manual",
    delivery_id: str = DELIVERY_ID,
) -> Message:
    ended = status >= 3
    run = {
        "id": 4217,
        "status": status,
        "status_text": {2: "Running", 3: "Finished", 4: "Timed out", 5: "Aborted by user"}.get(
            status, "?"
        ),
        "result": result,
        "trigger": trigger,
        "user_id": 11,
        "user_name": "Ada Lovelace",
        "created_at": "2025-07-03T14:29:40Z",
        "started_at": "2025-07-03T14:30:00Z",
        "ended_at": "2025-07-03T14:35:00Z" if ended else None,
        "duration_s": 300.0 if ended else None,
        "metrics": {},
        "url": "http://loadbell.test/runs/4217",
        "comparison": None,
    }
    context: dict[str, Any] = {
        "organization": {"id": 1, "name": "Acme"},
        "project": {"id": 5, "name": "Shop"},
        "load_test": {"id": 3, "name": "checkout"},
        "run": run if event is not EventType.TEST_NOTIFICATION_CHANNEL else None,
        "extra": {},
    }
    return Message(
        delivery_id=delivery_id,
        event_id=77,
        event_type=event,
        occurred_at=datetime(2025, 7, 3, 14, 35, tzinfo=UTC),
        context=context,
        public_url="http://loadbell.test",
    )


CASES = [
    # (event, status, result, trigger, X-k6cloud-Event)
    (EventType.TEST_STARTED, 2, None, "manual", "test.started.manual"),
    (EventType.TEST_STARTED, 2, None, "scheduled", "test.started.scheduled"),
    (EventType.TEST_FINISHED, 3, "passed", "manual", "test.finished.success"),
    (EventType.TEST_FINISHED, 3, "failed", "manual", "test.finished.failed"),
    (EventType.TEST_FINISHED, 4, "failed", "manual", "test.finished.timed_out"),
    (EventType.TEST_FINISHED, 5, "failed", "scheduled", "test.finished.aborted_user"),
    (EventType.TEST_NOTIFICATION_CHANNEL, 0, None, "manual", "<any>"),  # the test hook
]


@pytest.mark.parametrize(("event", "status", "result", "trigger", "name"), CASES)
def test_headers(
    event: EventType, status: int, result: str | None, trigger: str, name: str
) -> None:
    """X-k6cloud-ID is the delivery id, X-k6cloud-Event the full identifier, and the
    User-Agent starts with K6CloudWebHook; custom headers come after, the format's stay."""
    config = WebhookKind().validate(
        {"url": "http://127.0.0.1:9/hook", "format": "k6cloud", "headers": {"X-Token": "s"}}
    )
    request = WebhookKind().render(_message(event, status, result, trigger), config)
    assert list(request.headers) == [
        "Content-Type",
        "X-k6cloud-ID",
        "X-k6cloud-Event",
        "User-Agent",
        "X-Token",
    ]
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-k6cloud-ID"] == DELIVERY_ID
    assert request.headers["X-k6cloud-Event"] == name
    assert request.headers["User-Agent"].startswith("K6CloudWebHook")
    assert orjson.loads(request.body)["event"]["type"] == name


@pytest.mark.parametrize(("event", "status", "result", "trigger", "name"), CASES)
def test_body_validates_against_the_schema(
    event: EventType, status: int, result: str | None, trigger: str, name: str
) -> None:
    """Every body the format sends is valid against src/loadbell/schemas/k6cloud.json."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    body = orjson.loads(k6cloud.encode(_message(event, status, result, trigger), {}))
    jsonschema.validate(body, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_schema_refuses_a_body_that_is_not_the_generic_one() -> None:
    """The schema is strict: an extra key or a wrong type fails, so the test above can fail."""
    body = k6cloud.body(_message(EventType.TEST_FINISHED, 3, "failed"))
    for broken in (
        {**body, "extra": 1},
        {**body, "status": "3"},
        {**body, "result": 0},  # test.finished.failed with a passed result
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_failed_run_body_is_exact() -> None:
    """A Finished run with a failed result: every field of the Generic body, in order."""
    body = orjson.loads(k6cloud.encode(_message(EventType.TEST_FINISHED, 3, "failed"), {}))
    event_id = body["event"].pop("id")
    assert len(event_id) == 32 and int(event_id, 16) >= 0
    assert body == {
        "text": "k6.io example webhook template",
        "test_run": {
            "name": "checkout",
            "id": 4217,
            "link": "http://loadbell.test/runs/4217",
            "load_test_id": 3,
            "load_test_link": "http://loadbell.test/projects/5/runs",
            "project_id": 5,
            "organization_id": 1,
            "user_id": 11,
            "user_name": "Ada Lovelace",
            "user_avatar": "https://www.gravatar.com/avatar/?d=mp&f=y",
            "was_scheduled": "no",
            "test_started": "2025-07-03T14:30:00Z",
            "test_ended": "2025-07-03T14:35:00Z",
        },
        "event": {"type": "test.finished.failed", "text": "Test failed"},
        "status": 3,
        "status_text": "Finished",
        "result": 1,
        "result_text": "Failed",
        "color": "red",
        "errors": [],
    }
    assert list(body) == list(SCHEMA["required"])


@pytest.mark.parametrize(("event", "status", "result", "trigger", "name"), CASES)
def test_body_is_what_the_generic_template_renders(
    event: EventType, status: int, result: str | None, trigger: str, name: str
) -> None:
    """Grafana's Generic template, rendered by the template format with the same message,
    gives the same document as the k6cloud format: the same field names and values."""
    message = _message(event, status, result, trigger)
    rendered = json.loads(template.render(GENERIC, message))
    assert rendered == k6cloud.body(message)


def test_event_id_is_the_same_on_every_delivery_of_an_event() -> None:
    """event.id is a hash of the event: two deliveries (or retries) of it share it, and
    another event has another."""
    one = k6cloud.body(_message(EventType.TEST_STARTED, delivery_id="a"))
    two = k6cloud.body(_message(EventType.TEST_STARTED, delivery_id="b"))
    assert one["event"]["id"] == two["event"]["id"]
    other = _message(EventType.TEST_STARTED)
    other = replace(other, event_id=78)
    assert k6cloud.body(other)["event"]["id"] != one["event"]["id"]


def test_test_hook_fills_made_up_values() -> None:
    """Like Grafana's "Send test event", the test hook's body has every field, with made-up
    run values in the caller's organization and project, and event type <any>."""
    body = k6cloud.body(_message(EventType.TEST_NOTIFICATION_CHANNEL))
    assert body["event"]["type"] == "<any>" and body["event"]["text"] == "Unknown"
    assert body["test_run"]["organization_id"] == 1
    assert body["test_run"]["project_id"] == 5
    assert body["test_run"]["name"]


@pytest.mark.parametrize(
    "event", [EventType.TEST_STARTING, EventType.PROJECT_CREATED, EventType.TEST_REGRESSED]
)
def test_events_grafana_has_no_identifier_for_are_refused(event: EventType) -> None:
    """The format cannot express loadbell events outside Grafana's table."""
    assert event not in WebhookKind().events({"format": "k6cloud"})
    with pytest.raises(k6cloud.FormatError, match=event.value):
        k6cloud.body(_message(event))


@pytest.mark.parametrize("name", ["X-k6cloud-ID", "x-k6cloud-event", "User-Agent"])
def test_custom_headers_cannot_replace_the_formats(name: str) -> None:
    """A custom header may not replace a header the k6cloud format owns."""
    with pytest.raises(ConfigError) as info:
        WebhookKind().validate(
            {"url": "http://127.0.0.1:9/", "format": "k6cloud", "headers": {name: "x"}}
        )
    assert info.value.field == f"config.headers.{name}"


def test_names_with_quotes_stay_valid_json() -> None:
    """A load test or user name with quotes and a newline is JSON-escaped, not spliced."""
    message = _message(EventType.TEST_STARTED)
    ctx = {**message.context, "load_test": {"id": 3, "name": 'a "quoted"\ntest'}}
    ctx["run"] = {**ctx["run"], "user_name": 'O"Brien'}
    body = orjson.loads(k6cloud.encode(replace(message, context=ctx), {}))
    assert body["test_run"]["name"] == 'a "quoted"\ntest'
    assert body["test_run"]["user_name"] == 'O"Brien'
