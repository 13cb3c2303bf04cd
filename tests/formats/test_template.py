"""Custom webhook bodies from a sandboxed Jinja2 template."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from loadbell.channels.base import ConfigError
from loadbell.channels.webhook import WebhookKind
from loadbell.domain.events import EventType
from loadbell.formats import samples, template
from loadbell.testing import RecordingReceiver

# A template a user might write: it guards the run-only parts, so it renders every event.
EVERY_EVENT = """{
  "event": {{ event | tojson }},
  "id": {{ delivery_id | tojson }},
  "at": {{ occurred_at | tojson }},
  "org": {{ organization.name | tojson }},
  "project": {{ project.name | tojson if project else "null" }},
  "test": {{ load_test.name | tojson if load_test else "null" }},
{% if run %}
  "run": {"id": {{ run.id }}, "status": {{ run.status_text | tojson }},
          "result": {{ run.result | tojson }}, "link": {{ run.url | tojson }}},
  "requests": {{ metrics.requests | default(0) }},
  "failed": {{ metrics.thresholds | default([]) | rejectattr("ok") | list | length }},
{% endif %}
  "severity": {{ summary.severity | tojson }},
  "text": {{ summary.text | tojson }},
  "extra": {{ extra | tojson }},
  "home": {{ public_url | tojson }}
}
"""


def _config(source: str, **extra: Any) -> dict[str, Any]:
    return WebhookKind().validate(
        {"url": "http://127.0.0.1:9/hook", "format": "template", "template": source, **extra}
    )


def _render(source: str, event: EventType = EventType.TEST_FINISHED, **extra: Any) -> str:
    request = WebhookKind().render(samples.sample_message(event), _config(source, **extra))
    return request.body.decode()


@pytest.mark.parametrize("event", list(EventType), ids=lambda e: e.value)
def test_one_template_expresses_every_event(event: EventType) -> None:
    """A guarded template renders valid JSON for every event of the catalog."""
    assert event in WebhookKind().events({"format": "template"})
    body = json.loads(_render(EVERY_EVENT, event))
    assert body["event"] == event.value
    assert body["id"] == samples.SAMPLE_DELIVERY_ID
    assert body["at"] == "2025-07-03T14:35:00Z"
    assert body["home"] == samples.SAMPLE_PUBLIC_URL
    assert ("run" in body) == event.is_run_event


def test_finished_run_variables() -> None:
    """run, metrics and summary carry the finished run's facts."""
    body = json.loads(_render(EVERY_EVENT))
    assert body["run"] == {
        "id": 4217,
        "status": "Finished",
        "result": "failed",
        "link": "http://localhost:8000/runs/4217",
    }
    assert body["requests"] == 15012
    assert body["failed"] == 1
    assert body["severity"] == "error"
    assert body["text"].startswith("Load test failed: checkout-flow in Web shop")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('a "quoted"\nline', '"a \\"quoted\\"\\nline"'),  # quotes and newlines escaped
        ("<b>&</b>", '"<b>&</b>"'),  # no HTML escaping: bodies are not HTML
        ("Zürich ✓", '"Zürich ✓"'),  # UTF-8 kept as is
        ({"a": [1, None]}, '{"a": [1, null]}'),
    ],
)
def test_tojson_writes_plain_json(value: Any, expected: str) -> None:
    """tojson turns any value into JSON text, without HTML escaping."""
    assert template._tojson(value) == expected


def test_tojson_indent() -> None:
    """tojson(indent=2) pretty-prints."""
    assert _render('{{ {"a": 1} | tojson(indent=2) }}', **{"headers": {}}) == '{\n  "a": 1\n}'


@pytest.mark.parametrize(
    ("source", "line", "words"),
    [
        # syntax error on line 2
        ('{\n  "a": {{ run.id }\n}', 2, "unexpected '}'"),
        # an unknown variable is an error, not an empty string (StrictUndefined)
        ('{\n  "a": 1,\n  "b": {{ runn.id }}\n}', 3, "'runn' is undefined"),
        # the sandbox refuses Python internals
        ('{"a": "{{ run.__class__ }}"}', 1, "unsafe"),
        # and work that would stall the worker
        ('{"a": "{{ "x" * 100000000 }}"}', 1, "1 MiB"),
        ('{"a": {{ 2 ** 100000 }}}', 1, "exponent"),
        # valid template, invalid JSON: the rendered line 3 lacks a comma
        ('{\n  "a": {{ run.id }}\n  "b": 2\n}', 3, "not valid JSON"),
    ],
)
def test_bad_templates_are_refused_with_the_line(source: str, line: int, words: str) -> None:
    """validate() refuses the template with config.template and 'line N: ...'."""
    with pytest.raises(ConfigError) as info:
        _config(source)
    assert info.value.field == "config.template"
    assert info.value.message.startswith(f"line {line}: "), info.value.message
    assert words in info.value.message


def test_text_content_type_allows_non_json() -> None:
    """With a non-JSON Content-Type the body may be anything, and that header is sent."""
    source = "{{ summary.text }}\n{{ run.url }}\n"
    config = _config(source, headers={"content-type": "text/plain; charset=utf-8"})
    request = WebhookKind().render(samples.sample_message(EventType.TEST_FINISHED), config)
    assert request.body.decode().endswith("\nhttp://localhost:8000/runs/4217\n")
    content_types = [v for k, v in request.headers.items() if k.lower() == "content-type"]
    assert content_types == ["text/plain; charset=utf-8"]


@pytest.mark.parametrize("content_type", ["application/json", "application/cloudevents+json"])
def test_json_content_types_are_checked(content_type: str) -> None:
    """Any JSON media type (also +json) makes the sample render be parsed."""
    with pytest.raises(ConfigError, match="not valid JSON"):
        _config("not json", headers={"Content-Type": content_type})


def test_template_is_required_with_the_template_format() -> None:
    """format 'template' without a template is a config error naming config.template."""
    with pytest.raises(ConfigError) as info:
        WebhookKind().validate({"url": "http://127.0.0.1:9/", "format": "template"})
    assert info.value.field == "config.template"


def test_content_type_is_only_settable_with_templates() -> None:
    """Other formats keep their own Content-Type."""
    with pytest.raises(ConfigError) as info:
        WebhookKind().validate(
            {"url": "http://127.0.0.1:9/", "format": "loadmance", "headers": {"Content-Type": "x"}}
        )
    assert "template format" in info.value.message


def test_run_only_fields_fail_for_other_events_with_the_line() -> None:
    """An unguarded template saves (test.finished renders) but names its line for events
    without a run, which the preview endpoint shows."""
    config = _config('{\n  "run": {{ run.id }}\n}')
    with pytest.raises(template.TemplateError) as info:
        WebhookKind().render(samples.sample_message(EventType.PROJECT_CREATED), config)
    assert info.value.message == "line 2: 'None' has no attribute 'id'"


async def test_bad_template_is_a_422_with_the_line(api: httpx.AsyncClient) -> None:
    """Saving an invalid template answers 422 with field config.template and the line."""
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "webhook",
            "name": "templated",
            "config": {
                "url": "http://127.0.0.1:9/",
                "format": "template",
                "template": '{\n  "a": 1,\n  "b": {% if %}\n}',
            },
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "config.template"
    assert "line 3: " in r.json()["message"]


async def test_templated_body_is_delivered(
    api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """A real run reaches the receiver with the template's body, rendered from its context."""
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "webhook",
            "name": "templated",
            "config": {"url": f"{receiver.url}/t", "format": "template", "template": EVERY_EVENT},
            "events": ["test.started"],
        },
    )
    assert r.status_code == 201, r.text
    run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "checkout"})).json()
    assert (await api.patch(f"/runs/{run['id']}", json={"status": 2})).status_code == 200
    (got,) = await receiver.wait_for(1)
    body = got.json()
    assert body["event"] == "test.started"
    assert body["test"] == "checkout"
    assert body["run"]["id"] == run["id"]
    assert body["run"]["status"] == "Running"
    assert got.header("Content-Type") == "application/json"


def test_template_is_kept_under_other_formats_and_checked_on_switch_back() -> None:
    """A template stays on a channel whose format changed, and is checked once in use."""
    base = {"url": "http://127.0.0.1:9/", "template": "{{ broken"}
    kept = WebhookKind().validate({**base, "format": "loadmance"})
    assert kept["template"] == "{{ broken"
    with pytest.raises(ConfigError) as info:
        WebhookKind().validate({**kept, "format": "template"})
    assert info.value.field == "config.template"
