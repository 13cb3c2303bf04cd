"""The message samples in docs/channels.md are exactly what the kinds send."""

from __future__ import annotations

import dataclasses
import email
import json
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest

from channels.cases import message
from loadbell.channels.base import targets_of
from loadbell.channels.registry import get_kind

DOC = Path(__file__).parents[2] / "docs" / "channels.md"
# <!-- sample: KIND CASE [PART] --> followed by a fenced block; CASE names channels/cases.py.
SAMPLE = re.compile(r"<!-- sample: (\w+) (\w+)(?: (\w+))? -->\n```\w*\n(.*?)\n```", re.S)
CONFIGS: dict[str, dict[str, Any]] = {
    "slack": {"webhook_url": "https://hooks.slack.com/services/T0/B0/XXXX"},
    "teams": {"url": "https://x"},
    "discord": {"url": "https://x"},
    "hipchat": {"url": "https://x"},
    "mattermost": {"url": "https://x"},
    "slack_app": {
        "targets": "#load-tests",
        "bot_token": "xoxb-0-0-XXXX",
        "workspace": "Acme",
        "team_id": "T0ACME",
    },
    "apprise": {"url": "json://127.0.0.1:9/hook"},
    "email": {
        "to": ["ops@example.com"],
        "from": "loadbell <alerts@example.com>",
        "smtp_host": "smtp.example.com",
    },
}
# kind -> the parts each case documents ("" for the whole body)
PARTS: dict[str, tuple[str, ...]] = {kind: ("",) for kind in CONFIGS}
PARTS["email"] = ("text", "html")  # both MIME alternatives
SAMPLES = SAMPLE.findall(DOC.read_text(encoding="utf-8"))


def _request_body(kind_name: str, case: str) -> bytes:
    kind = get_kind(kind_name)
    config = {**kind.defaults, **kind.validate(CONFIGS[kind_name])}
    msg = dataclasses.replace(message(case), target=targets_of(config)[0])
    preview = getattr(kind, "preview", None)  # kinds that do not speak HTTP
    return (preview(msg, config) if preview else kind.render(msg, config)).body


def _mail(case: str) -> EmailMessage:
    return cast(
        EmailMessage, email.message_from_bytes(_request_body("email", case), policy=policy.default)
    )


def test_every_kind_has_a_passed_and_a_failed_sample() -> None:
    """Each kind documents a finished run that passed and one that failed (every part)."""
    documented = {(kind, case, part) for kind, case, part, _ in SAMPLES}
    expected = {
        (kind, case, part)
        for kind, parts in PARTS.items()
        for part in parts
        for case in ("finished_passed", "finished_failed")
    }
    assert expected <= documented, sorted(expected - documented)


@pytest.mark.parametrize(
    ("kind", "case", "part", "body"),
    SAMPLES,
    ids=["-".join(filter(None, (k, c, p))) for k, c, p, _ in SAMPLES],
)
def test_documented_sample_matches_rendering(kind: str, case: str, part: str, body: str) -> None:
    """A documented body equals what the kind renders (or hands over) for the same event."""
    if kind != "email":
        assert json.loads(body) == json.loads(_request_body(kind, case))
        return
    mail = _mail(case)
    if part == "html":
        # One line on the wire; the docs break it at tags.
        rendered = mail.get_body(("html",))
        assert rendered is not None
        html = "".join(line.strip() for line in body.splitlines())
        assert html == rendered.get_content().rstrip("\n")
        return
    assert part == "text"
    head, _, text = body.partition("\n\n")
    for line in head.splitlines():
        name, _, value = line.partition(": ")
        shown = mail.get_content_type() if name == "Content-Type" else str(mail[name])
        assert shown == value, name
    plain = mail.get_body(("plain",))
    assert plain is not None
    assert text + "\n" == plain.get_content()
