"""Custom webhook bodies from a sandboxed Jinja2 template."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from loadbell.channels.webhook import WebhookKind
from loadbell.domain.events import SUBSCRIBABLE, EventType
from loadbell.formats import samples, template
from loadbell.testing import RecordingReceiver
from loadbell.values import ConfigError

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


def _check(
    source: str, events: tuple[EventType, ...] = SUBSCRIBABLE, **extra: Any
) -> dict[str, Any]:
    """What saving does: validate, then render the sample of each subscribed event."""
    config = _config(source, **extra)
    WebhookKind().check_events(config, events)
    return config


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


def test_tojson_writes_non_finite_floats_as_null() -> None:
    """NaN and the infinities, which JSON cannot say, become null, so a body stays JSON."""
    assert template._tojson([float("nan"), {"a": float("-inf")}, 1.5]) == '[null, {"a": null}, 1.5]'


def test_tojson_of_a_container_holding_itself_is_a_template_error() -> None:
    """A list a template made to hold itself is refused with the line, NaN inside or not."""
    for item in ("1", "run.id * 1e308"):  # an infinity, made at render time
        source = f"{{% set a = [{item}] %}}{{{{ a.append(a) or '' }}}}\n{{{{ a | tojson }}}}"
        with pytest.raises(template.TemplateError, match="line 2: ValueError: Circular"):
            _render(source)


def test_templates_see_the_readable_metrics_document() -> None:
    """metrics, run.metrics and an intermediate report's metrics leave out figures that are
    no number, so `default` covers them as it covers a missing figure."""
    message = samples.sample_message(EventType.TEST_REPORT_INTERMEDIATE)
    odd = {"rps": "fast", "requests": 10, "thresholds": ["x"], "p99_ms": "slow"}
    message.context["run"]["metrics"] = odd
    message.context["extra"]["report"]["metrics"] = odd
    source = (
        '{{ metrics.rps | default("none") }} {{ run.metrics.rps | default("none") }} '
        '{{ extra.report.metrics.rps | default("none") }} {{ metrics.requests }} '
        "{{ metrics.thresholds | length }} {{ metrics.p99_ms }}"
    )
    body = WebhookKind().render(message, _config(source, headers={"Content-Type": "text/plain"}))
    assert body.body.decode() == "none none none 10 0 slow"
    assert message.context["run"]["metrics"] == odd  # the frozen context is not changed


def test_tojson_indent() -> None:
    """tojson(indent=2) pretty-prints."""
    assert _render('{{ {"a": 1} | tojson(indent=2) }}', **{"headers": {}}) == '{\n  "a": 1\n}'


@pytest.mark.parametrize(
    ("source", "prefix", "words"),
    [
        # syntax error on line 2: no event needed to find it
        ('{\n  "a": {{ run.id }\n}', "line 2: ", "unexpected '}'"),
        # an unknown variable is an error, not an empty string (StrictUndefined)
        ('{\n  "a": 1,\n  "b": {{ runn.id }}\n}', "event test.starting, line 3: ", "'runn'"),
        # the sandbox refuses Python internals
        ('{"a": "{{ run.__class__ }}"}', "event test.starting, line 1: ", "unsafe"),
        # and work that would stall the worker
        ('{"a": "{{ "x" * 100000000 }}"}', "event test.starting, line 1: ", "1 MiB"),
        ('{"a": {{ 2 ** 100000 }}}', "event test.starting, line 1: ", "exponent"),
        # valid template, invalid JSON: line 3 lacks a comma
        ('{\n  "a": 1\n  "b": 2\n}', "event test.starting, line 3: ", "not valid JSON"),
    ],
)
def test_bad_templates_are_refused_with_the_line(source: str, prefix: str, words: str) -> None:
    """Saving refuses the template with config.template and 'event E, line N: ...'."""
    with pytest.raises(ConfigError) as info:
        _check(source)
    assert info.value.field == "config.template"
    assert info.value.message.startswith(prefix), info.value.message
    assert words in info.value.message


def test_invalid_json_names_the_template_line_and_shows_the_rendered_one() -> None:
    """A loop makes rendered and template lines differ: the message gives the template's
    line, and quotes the rendered line with its number."""
    source = (
        "{\n"
        "{% for t in metrics.thresholds %}\n"
        '  "{{ t.metric }}": {{ t.ok | tojson }}\n'  # no comma between entries
        "{% endfor %}\n"
        "}"
    )
    with pytest.raises(template.TemplateError) as info:
        _check(source, (EventType.TEST_FINISHED,))
    assert info.value.message == (
        "event test.finished, line 3: the body is not valid JSON (Expecting ',' delimiter "
        'at line 5, column 3 of the rendered body, which reads: "http_req_failed": true)'
    )


def test_whitespace_control_keeps_the_template_line() -> None:
    """Text trimmed by {%- ... %} is still traced to its template line."""
    source = '{\n  "a": 1,\n  {%- if run %}\n  "b": 2\n  {%- endif %}\n  "c": 3\n}'
    with pytest.raises(template.TemplateError) as info:
        _check(source, (EventType.TEST_FINISHED,))
    assert info.value.message.startswith("event test.finished, line 6: "), info.value.message
    assert 'line 4, column 3 of the rendered body, which reads: "c": 3' in info.value.message


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
        _check("not json", headers={"Content-Type": content_type})


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


# The audit's example: fine for test.finished, but not every event has a run or a p95.
RUN_ONLY = '{"run": {{ run.id }}, "p95": {{ metrics.p95_ms }}}'


def test_each_subscribed_event_is_rendered_on_save() -> None:
    """A template that renders test.finished but not other subscribed events is refused,
    naming the first event that fails, its line, the events that work, and the way out."""
    with pytest.raises(template.TemplateError) as info:
        _check(RUN_ONLY)
    assert info.value.message == (
        "event test.starting, line 1: 'dict object' has no attribute 'p95_ms'; it renders "
        "for test.finished, test.report_intermediate, test.report_available, "
        "test.threshold_failed, test.regressed: if it is meant for those only, set the "
        "channel's events to "
        "them, otherwise guard what test.starting lacks ({% if run %}...{% endif %}, "
        "| default(...))"
    )
    with pytest.raises(template.TemplateError) as info:
        _check(RUN_ONLY, (EventType.TEST_FINISHED, EventType.PROJECT_CREATED))
    assert info.value.message.startswith("event project.created, line 1: 'None' has no")
    _check(RUN_ONLY, (EventType.TEST_FINISHED, EventType.TEST_THRESHOLD_FAILED))


def test_delivery_errors_still_name_the_line() -> None:
    """At delivery (or preview) the render error names the template line."""
    config = _config('{\n  "run": {{ run.id }}\n}')
    with pytest.raises(template.TemplateError) as info:
        WebhookKind().render(samples.sample_message(EventType.PROJECT_CREATED), config)
    assert info.value.message == "line 2: 'None' has no attribute 'id'"


async def test_save_checks_the_subscribed_events(api: httpx.AsyncClient) -> None:
    """POST and PATCH answer 422 for an event the template cannot render; narrowing the
    events saves it, and widening them again is refused."""
    body = {
        "organization_id": 1,
        "kind": "webhook",
        "name": "templated",
        "config": {"url": "http://127.0.0.1:9/", "format": "template", "template": RUN_ONLY},
    }
    r = await api.post("/channels", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "config.template"
    assert r.json()["message"].startswith("config.template: event test.starting, line 1: ")
    assert "set the channel's events" in r.json()["message"]

    r = await api.post("/channels", json={**body, "events": ["test.finished"]})
    assert r.status_code == 201, r.text
    url = f"/channels/{r.json()['id']}"
    r = await api.patch(url, json={"events": ["test.finished", "project.created"]})
    assert r.status_code == 422, r.text
    assert "event project.created, line 1: 'None' has no attribute 'id'" in r.json()["message"]
    r = await api.patch(url, json={"config": {"template": '{"p95": {{ metrics.p95_ms }}}'}})
    assert r.status_code == 200, r.text  # test.finished has a p95
    r = await api.patch(url, json={"config": {"template": "{{ run.id }} x"}})
    assert r.status_code == 422, r.text
    assert "event test.finished, line 1: the body is not valid JSON" in r.json()["message"]


async def test_overrides_are_checked_against_the_channel_events(api: httpx.AsyncClient) -> None:
    """A project's own template must render the channel's events, and so must it after the
    organization widens them."""
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "kind": "webhook",
            "name": "templated",
            "config": {"url": "http://127.0.0.1:9/", "format": "template", "template": "{}"},
            "events": ["test.finished"],
        },
    )
    assert r.status_code == 201, r.text
    channel = r.json()["id"]
    put = f"/channels/{channel}/overrides/1"
    r = await api.put(put, json={"config": {"template": '{"p95": {{ metrics.p95_ms }}}x'}})
    assert r.status_code == 422, r.text
    assert "event test.finished, line 1: the body is not valid JSON" in r.json()["message"]
    r = await api.put(put, json={"config": {"template": RUN_ONLY}})
    assert r.status_code == 200, r.text

    r = await api.patch(
        f"/channels/{channel}", json={"events": ["test.finished", "project.created"]}
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "config.template"
    assert r.json()["message"].endswith("(project 1's override)")
    assert "event project.created, line 1" in r.json()["message"]


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


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # a finished run compared with its baseline: the stored comparison, as is
        (EventType.TEST_FINISHED, "4180 27.6 True True"),
        (EventType.TEST_REGRESSED, "4180 27.6 True True"),
        # a run still going has none yet, and an event without a run none at all
        (EventType.TEST_STARTED, "none"),
        (EventType.PROJECT_CREATED, "none"),
    ],
)
def test_comparison_variable(event: EventType, expected: str) -> None:
    """Templates see ``comparison``: the run's comparison with its baseline, or None."""
    source = (
        "{% if comparison %}{{ comparison.baseline_run_id }} "
        "{{ comparison.figures.p95_ms.change_pct }} {{ comparison.figures.p95_ms.regressed }} "
        "{{ comparison.regressed }}{% else %}none{% endif %}"
    )
    assert template.render(source, samples.sample_message(event)) == expected
