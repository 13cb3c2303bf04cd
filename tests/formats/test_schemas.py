"""The published payload schemas: valid draft 2020-12, described, strict enough to refuse a
broken body, matching what each format renders, and copied unchanged into docs/schemas/."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from loadbell.channels.registry import get_kind
from loadbell.domain.events import EventType
from loadbell.formats import samples
from loadbell.formats.asyncapi import render
from loadbell.formats.schemas import find, published
from schema_support import problems

DOCS = Path(__file__).resolve().parents[2] / "docs"

# (format or kind, the channel's kind and config): every JSON body loadbell sends.
SENDERS: list[tuple[str, str, dict[str, Any]]] = [
    ("loadimpact", "webhook", {"url": "http://rx.test/", "format": "loadimpact"}),
    ("loadimpact-legacy", "webhook", {"url": "http://rx.test/", "format": "loadimpact-legacy"}),
    ("loadmance", "webhook", {"url": "http://rx.test/", "format": "loadmance"}),
    ("slack", "slack", {"webhook_url": "http://rx.test/"}),
    ("slack_app", "slack_app", {"targets": "#ops", "bot_token": "xoxb-1"}),
    ("teams", "teams", {"url": "http://rx.test/"}),
    ("discord", "discord", {"url": "http://rx.test/"}),
    ("mattermost", "mattermost", {"url": "http://rx.test/"}),
    ("hipchat", "hipchat", {"url": "http://rx.test/"}),
]


def _bodies() -> list[tuple[str, str, Any]]:
    """(format, event, body) for every event each sender can express, from the samples."""
    out = []
    for fmt, kind_name, config in SENDERS:
        kind = get_kind(kind_name)
        clean = kind.validate(config)
        for event in sorted(kind.events(clean)):
            message = samples.sample_message(event)
            if kind_name == "slack_app":
                message = dataclasses.replace(message, target="#ops")
            messages = [message]
            if event is EventType.TEST_FINISHED:  # the sample failed; a passed run too
                passed = copy.deepcopy(dict(message.context))
                passed["run"]["result"] = "passed"
                messages.append(dataclasses.replace(message, context=passed))
            for one in messages:
                out.append((fmt, event.value, orjson.loads(kind.render(one, clean).body)))
    return out


BODIES = _bodies()


@pytest.mark.parametrize("schema", list(published().values()), ids=lambda s: s.name)
def test_schema_is_valid_and_described(schema: Any) -> None:
    """Each file is a valid draft 2020-12 schema with an absolute $id, a title and a
    description; one that says its format (x-loadbell) names its events too."""
    Draft202012Validator.check_schema(schema.document)
    doc = schema.document
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert str(doc["$id"]).startswith(("urn:loadbell:schema:", "https://"))
    assert doc["title"] and doc["description"]
    if "x-loadbell" in doc:
        assert schema.events, "x-loadbell.events names the events the body is sent for"


@pytest.mark.parametrize(
    ("fmt", "event", "body"), BODIES, ids=[f"{f}-{e}-{i}" for i, (f, e, _) in enumerate(BODIES)]
)
def test_rendered_body_matches_its_schema(fmt: str, event: str, body: Any) -> None:
    """What the format renders for the event's sample matches exactly one of its schemas."""
    assert problems(fmt, event, body) == []


def test_every_format_and_event_is_covered() -> None:
    """Every published schema describes at least one body the samples render."""
    covered = {
        s.name
        for fmt, event, body in BODIES
        for s in published().values()
        if s.format == fmt
        and event in s.events
        and not list(Draft202012Validator(s.document).iter_errors(body))
    }
    assert set(published()) - {"k6cloud"} <= covered  # k6cloud: its own tests


def _break(body: dict[str, Any], how: str) -> dict[str, Any]:
    broken = copy.deepcopy(body)
    key = next(iter(broken))
    if how == "missing":
        del broken[key]
    elif how == "wrong type":
        broken[key] = [] if not isinstance(broken[key], list) else "x"
    else:
        broken["unexpected"] = 1
    return broken


# One body per schema, broken three ways: each must be refused.
@pytest.mark.parametrize("how", ["missing", "wrong type", "extra key"])
@pytest.mark.parametrize(
    ("fmt", "event", "body"),
    [b for b in BODIES if b[1] in ("test.finished", "test.notification_channel")],
    ids=[f"{f}-{e}" for f, e, _ in BODIES if e in ("test.finished", "test.notification_channel")],
)
def test_a_broken_body_fails(fmt: str, event: str, body: dict[str, Any], how: str) -> None:
    """A required key left out, a value of the wrong type, or a key no format sends is a
    validation error."""
    assert problems(fmt, event, _break(body, how)) != []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", "3"),  # a string, not the integer code
        ("status", 2),  # test.finished with a running status
        ("status_text", "Running"),  # not the text of code 3
        ("load_test_run_id", None),
    ],
)
def test_loadimpact_values_are_checked(field: str, value: Any) -> None:
    """The loadimpact schema checks types, the code/text pairs and the status per event."""
    message = samples.sample_message(EventType.TEST_FINISHED)
    kind = get_kind("webhook")
    body = orjson.loads(kind.render(message, kind.validate(SENDERS[0][2])).body)
    assert problems("loadimpact", "test.finished", body) == []
    assert problems("loadimpact", "test.finished", {**body, field: value}) != []


def test_find_takes_the_name_with_or_without_json() -> None:
    """find() takes 'name' and 'name.json'; an unknown name is None."""
    assert find("slack") is find("slack.json") is published()["slack"]
    assert find("nope") is None


def test_docs_copies_match() -> None:
    """docs/schemas/ holds every schema unchanged, and nothing else (run `bin/dev schemas`)."""
    copies = {p.stem: p.read_text() for p in (DOCS / "schemas").glob("*.json")}
    assert set(copies) == set(published()), "run `bin/dev schemas` to update docs/schemas/"
    for name, schema in published().items():
        assert copies[name] == render(schema.document), f"run `bin/dev schemas` ({name})"
