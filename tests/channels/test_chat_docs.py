"""The chat samples in docs/channels.md are exactly what the kinds send."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from channels.cases import message
from loadbell.channels.registry import get_kind

DOC = Path(__file__).parents[2] / "docs" / "channels.md"
SAMPLE = re.compile(r"<!-- sample: (\w+) (\w+) -->\n```json\n(.*?)\n```", re.S)
URLS = {
    "slack": {"webhook_url": "https://hooks.slack.com/services/T0/B0/XXXX"},
    "teams": {"url": "https://x"},
    "discord": {"url": "https://x"},
    "hipchat": {"url": "https://x"},
    "mattermost": {"url": "https://x"},
}
SAMPLES = SAMPLE.findall(DOC.read_text(encoding="utf-8"))


def test_every_chat_kind_has_a_passed_and_a_failed_sample() -> None:
    """Each chat kind documents a finished run that passed and one that failed."""
    documented = {(kind, case) for kind, case, _ in SAMPLES}
    expected = {(k, c) for k in URLS for c in ("finished_passed", "finished_failed")}
    assert expected <= documented


@pytest.mark.parametrize(("kind", "case", "body"), SAMPLES, ids=[f"{k}-{c}" for k, c, _ in SAMPLES])
def test_documented_sample_matches_rendering(kind: str, case: str, body: str) -> None:
    """A documented body equals what the kind renders for the same event."""
    k = get_kind(kind)
    request = k.render(message(case), {**k.defaults, **k.validate(URLS[kind])})
    assert json.loads(body) == json.loads(request.body)
