"""Every human-readable kind shows the load test's own duration and the Apdex T, the same
figures as the run page (issue 14)."""

from __future__ import annotations

import dataclasses
import email
from email import policy
from email.message import EmailMessage
from typing import cast

import pytest

from channels.cases import message
from channels.test_chat_docs import CONFIGS
from loadbell.channels.base import targets_of
from loadbell.channels.registry import get_kind
from loadbell.values import Message


def _quick_run() -> Message:
    """A 15 s load test whose client sent Running and Finished 0.1 s apart."""
    msg = message("finished_passed")
    run = msg.context["run"]
    run["duration_s"] = 0.1  # loadbell's status times
    run["metrics"] = {**run["metrics"], "duration_s": 15.0, "apdex": 0.93, "apdex_t_ms": 500}
    return msg


def _text(kind_name: str, msg: Message) -> str:
    kind = get_kind(kind_name)
    config = {**kind.defaults, **kind.validate(CONFIGS[kind_name])}
    msg = dataclasses.replace(msg, target=targets_of(config)[0])
    preview = getattr(kind, "preview", None)  # kinds that do not speak HTTP
    body = (preview(msg, config) if preview else kind.render(msg, config)).body
    if kind_name == "email":
        mail = cast(EmailMessage, email.message_from_bytes(body, policy=policy.default))
        part = mail.get_body(("plain",))
        assert part is not None
        return str(part.get_content())
    return body.decode()


@pytest.mark.parametrize("kind_name", sorted(CONFIGS))
def test_messages_show_the_load_tests_own_duration(kind_name: str) -> None:
    """15.0 s from the test's summary, never loadbell's 0.1 s; Apdex with its T."""
    text = _text(kind_name, _quick_run())
    assert "15.0 s" in text
    assert "0.1 s" not in text
    assert "0.93 (T = 500 ms)" in text


@pytest.mark.parametrize("kind_name", sorted(CONFIGS))
def test_status_times_are_labelled_when_the_test_reported_none(kind_name: str) -> None:
    """Without the test's own figure the status times show, and say so."""
    msg = _quick_run()
    del msg.context["run"]["metrics"]["duration_s"]
    text = _text(kind_name, msg)
    assert "0.1 s (status times)" in text
