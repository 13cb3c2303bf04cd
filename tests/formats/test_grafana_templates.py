"""Templates copied from Grafana Cloud k6's docs render unchanged: into valid JSON through a
webhook of format ``template``, and into a valid mail for the Email starter.
tests/formats/grafana/SOURCES.md says where each file comes from."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from loadbell.channels.webhook import WebhookKind
from loadbell.domain.events import EventType
from loadbell.formats import samples, template
from loadbell.values import Message

GRAFANA = Path(__file__).parent / "grafana"
RUN_EVENTS = [EventType.TEST_STARTED, EventType.TEST_FINISHED]
# Grafana's events, as loadbell samples them, plus the test hook (made-up values, as
# Grafana's "Send test event" fills them).
EVENTS = [*RUN_EVENTS, EventType.TEST_NOTIFICATION_CHANNEL]


def _source(name: str) -> str:
    return (GRAFANA / name).read_text()


def _render_channel(source: str, event: EventType) -> Any:
    """Save a template webhook with ``source`` as it is, render ``event``, parse the body."""
    kind = WebhookKind()
    config = kind.validate({"url": "http://127.0.0.1:9/", "format": "template", "template": source})
    kind.check_events(config, RUN_EVENTS)  # the save-time check passes
    request = kind.render(samples.sample_message(event), config)
    return json.loads(request.body)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.value)
def test_generic_template_renders_to_json(event: EventType) -> None:
    """The Generic template renders into valid JSON with Grafana's values filled in."""
    body = _render_channel(_source("generic.json.j2"), event)
    assert body["text"] == "k6.io example webhook template"
    assert body["test_run"]["name"] == samples.LOAD_TEST["name"]
    assert body["test_run"]["organization_id"] == samples.ORGANIZATION["id"]
    assert body["event"]["type"].startswith(("test.", "<any>"))
    assert body["errors"] == []


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.value)
def test_generic_template_as_far_as_shown_renders(event: EventType) -> None:
    """The 17 lines of the Generic template that Grafana's screenshot shows render, closed
    where the screenshot cuts them, into valid JSON."""
    shown = _source("generic_shown.json.j2").rstrip().removesuffix(",") + "\n}\n"
    body = _render_channel(shown, event)
    assert body["test_run"]["id"] == 4217
    assert body["test_run"]["was_scheduled"] == "no"
    assert body["test_run"]["user_avatar"].startswith("https://www.gravatar.com/avatar/")


@pytest.mark.parametrize(
    "name", ["snippet_name_id.json.j2", "snippet_color.json.j2", "snippet_errors.json.j2"]
)
def test_doc_snippets_render(name: str) -> None:
    """Each snippet of the page's "Templating syntax" section renders, inside the object the
    page shows it in ("{ ... }"), into valid JSON."""
    snippet = _source(name).rstrip().removesuffix(",")
    body = _render_channel("{\n" + snippet + "\n}\n", EventType.TEST_FINISHED)
    assert body


def test_errors_loop_renders_items_as_json() -> None:
    """The errors loop of the Generic template writes valid JSON for two errors too
    (loadbell's own runs carry none, so the items are given here)."""
    message = samples.sample_message(EventType.TEST_FINISHED)
    errors = [
        {"code": 1, "created": "2025-07-03T14:31:00Z", "detail": "script error"},
        {"code": 2, "created": "2025-07-03T14:32:00Z", "detail": "limit"},
    ]
    compiled = template.compile_template(_source("generic.json.j2"))
    body = json.loads(compiled.render({**template.variables(message), "errors": errors}))
    assert [e["code"] for e in body["errors"]] == [1, 2]


class _Balanced(HTMLParser):
    """Counts the template's own elements (a, ul, li), to check that the mail's HTML closes
    what it opens. The test hook's event type, Grafana's ``<any>``, reads as an element of
    its own in HTML (the starter does not escape it): it is not one of these."""

    OWN = frozenset({"a", "ul", "li"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.OWN:
            self.stack.append(tag)
        self.links += [v for k, v in attrs if k == "href" and v]

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.OWN:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack}"
        self.stack.pop()


def _mail(message: Message) -> tuple[str, bytes]:
    html = template.render(_source("email.html.j2"), message)
    mail = EmailMessage()
    mail["Subject"] = "Load-test notification from k6.io"  # the screenshot's subject
    mail["From"] = "loadbell@example.com"
    mail["To"] = "test@k6.io"
    mail.set_content(html, subtype="html")
    return html, mail.as_bytes(policy=email.policy.SMTP)


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.value)
def test_email_template_renders_to_valid_mail(event: EventType) -> None:
    """The Email starter renders into balanced HTML that makes a mail which parses back
    with the same subject and HTML body."""
    message = samples.sample_message(event)
    html, raw = _mail(message)
    checker = _Balanced()
    checker.feed(html)
    checker.close()
    assert checker.stack == []
    assert samples.sample_message(EventType.TEST_FINISHED).context["run"]["url"] in checker.links
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Load-test notification from k6.io"
    assert parsed.get_content_type() == "text/html"
    body = parsed.get_content()
    assert "Your test 'checkout-flow' fired the event" in body
    assert body.replace("\r\n", "\n").strip() == html.strip()  # SMTP lines end in CRLF


def test_loadbell_names_still_work_beside_grafanas() -> None:
    """One template may use loadbell's names (event, run, organization) and Grafana's
    (event.type, test, user) together; {{ event }} is still loadbell's event name."""
    source = (
        '{"event": {{ event | tojson }}, "grafana": "{{ event.type }}", '
        '"run": {{ run.id }}, "org": {{ organization.name | tojson }}, '
        '"test": {{ test.id }}, "user": "{{ user.name }}"}'
    )
    body = _render_channel(source, EventType.TEST_FINISHED)
    assert body == {
        "event": "test.finished",
        "grafana": "test.finished.failed",
        "run": 4217,
        "org": "Acme",
        "test": 4217,
        "user": "Ada Lovelace",
    }
