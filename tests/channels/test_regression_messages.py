"""Every human-readable kind shows a run's changes against its baseline run: each compared
figure in the finished message, what got worse in test.regressed (formats/samples.py's
run: p95 612.3 ms against 480.0 ms in run #4180)."""

from __future__ import annotations

import copy
import dataclasses
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from channels.test_odd_metrics import CONFIGS, _config, _request
from loadbell.channels.registry import KindName
from loadbell.domain.events import EventType
from loadbell.formats import samples
from loadbell.values import Message, OutboundRequest

READABLE = [c for c in CONFIGS if c[1] is not KindName.WEBHOOK]


def _text(request: OutboundRequest) -> str:
    """What a person would read: the body, or a mail's subject and both parts."""
    if request.method != "SMTP":
        return request.body.decode()
    mail = message_from_bytes(request.body, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    parts = [mail.get_body((kind,)) for kind in ("plain", "html")]
    return str(mail["Subject"]) + "\n" + "\n".join(p.get_content() for p in parts if p)  # type: ignore[attr-defined]


def _message(event: EventType, *, comparison: bool = True) -> Message:
    message = samples.sample_message(event)
    if message.target is None:
        message = dataclasses.replace(message, target="#load-tests")
    if comparison:
        return message
    context = copy.deepcopy(dict(message.context))
    context["run"]["comparison"] = None
    return dataclasses.replace(message, context=context)


def test_every_human_readable_kind_is_here() -> None:
    """The table holds the eight human-readable kinds of the issue."""
    assert {kind for _, kind, _ in READABLE} == {
        KindName.SLACK,
        KindName.SLACK_APP,
        KindName.TEAMS,
        KindName.DISCORD,
        KindName.MATTERMOST,
        KindName.HIPCHAT,
        KindName.EMAIL,
        KindName.APPRISE,
    }


@pytest.mark.parametrize(("name", "kind", "raw"), READABLE, ids=[c[0] for c in READABLE])
def test_finished_message_shows_the_changes(name: str, kind: KindName, raw: dict[str, str]) -> None:
    """The finished message gives each compared figure its change and names the baseline;
    without a comparison it shows none."""
    config = _config(kind, raw)
    text = _text(_request(kind, _message(EventType.TEST_FINISHED), config))
    assert "612.3 ms (+27.6 % vs run #4180)" in text  # p95
    assert "245.7 ms (+6.3 % vs run #4180)" in text  # avg
    assert "(+1.92 pp vs run #4180)" in text  # error rate, in points
    assert "run #4180" in text
    plain = _text(_request(kind, _message(EventType.TEST_FINISHED, comparison=False), config))
    assert "vs run #" not in plain


@pytest.mark.parametrize(("name", "kind", "raw"), READABLE, ids=[c[0] for c in READABLE])
def test_regressed_message_names_what_got_worse(
    name: str, kind: KindName, raw: dict[str, str]
) -> None:
    """test.regressed says which figures regressed, as the issue words it."""
    text = _text(_request(kind, _message(EventType.TEST_REGRESSED), _config(kind, raw)))
    assert "regressed" in text.lower()
    assert "p95 612.3 ms (+27.6 % vs run #4180)" in text
    assert "errors 3.12 % (+1.92 pp vs run #4180)" in text
