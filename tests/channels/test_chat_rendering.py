"""Every chat kind renders every event into a message its service accepts, within limits."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import pytest

from channels.cases import CASES, RUN_URL, message
from loadbell.channels import chat, discord, hipchat, slack, teams
from loadbell.channels.registry import get_kind
from loadbell.domain.events import EventType
from loadbell.formats.summary import Severity
from loadbell.testing.chat import discord_problems, slack_problems, teams_problem
from loadbell.values import OutboundRequest

URL = "https://chat.example.com/hooks/T0/B0/secret-token"
CONFIGS: dict[str, dict[str, Any]] = {
    "slack": {"webhook_url": URL},
    "hipchat": {"url": URL},
    "teams": {"url": URL},
    "discord": {"url": URL},
    "mattermost": {"url": URL},
}


def render(kind_name: str, case: str, **config: Any) -> tuple[OutboundRequest, Any]:
    kind = get_kind(kind_name)
    clean = kind.validate({**CONFIGS[kind_name], **config})
    request = kind.render(message(case), {**kind.defaults, **clean})
    return request, orjson.loads(request.body)


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def visible(kind: str, payload: Any) -> str:
    """The text a reader sees, markup and escaping undone."""
    text = "\n".join(strings(payload))
    if kind == "hipchat":
        text = re.sub(r"<[^>]+>", " ", text)
    if kind in ("slack", "hipchat"):
        text = html.unescape(text)
    return text


def check_slack(payload: Any) -> None:
    assert payload["text"] and len(payload["text"]) <= slack.MAX_FALLBACK
    assert slack_problems(payload) == []
    assert payload["blocks"][0]["type"] == "header"
    assert payload["blocks"][-1]["type"] == "context"


def check_discord(payload: Any) -> None:
    assert discord_problems(payload) == {}
    assert payload["allowed_mentions"] == {"parse": []}
    [embed] = payload["embeds"]
    assert isinstance(embed["color"], int)
    assert embed["timestamp"] == "2025-07-03T14:35:05Z"


def check_teams(payload: Any) -> None:
    assert teams_problem(payload) is None
    assert len(orjson.dumps(payload)) <= teams.MAX_BYTES
    [attachment] = payload["attachments"]
    assert attachment["contentUrl"] is None
    assert attachment["content"]["version"] == "1.2"


def check_hipchat(payload: Any) -> None:
    assert set(payload) == {"color", "message", "notify", "message_format", "from"}
    assert 1 <= len(payload["message"]) <= hipchat.MAX_MESSAGE
    assert payload["color"] in {"green", "red", "yellow", "gray", "purple"}
    assert payload["message_format"] == "html"


def check_mattermost(payload: Any) -> None:
    assert set(payload) == {"text", "attachments"}  # never blocks: both servers drop them
    [attachment] = payload["attachments"]
    assert attachment["color"].startswith("#")
    assert all(set(f) == {"short", "title", "value"} for f in attachment["fields"])


STRUCTURE: dict[str, Callable[[Any], None]] = {
    "slack": check_slack,
    "discord": check_discord,
    "teams": check_teams,
    "hipchat": check_hipchat,
    "mattermost": check_mattermost,
}

# case -> what a reader must find in every kind's message
EXPECTED: dict[str, list[str]] = {
    "finished_passed": [
        "✅", "Load test passed", "checkout", "Web shop", "Manual", "Ada Lovelace",
        "300.0 s", "15,012", "245.7 ms", "480.0 ms", "0.12 %", "0.93", "100",
        "http_req_duration: p(95)<500", "all 2 passed",
    ],
    "finished_failed": [
        "❌", "Load test failed", "1 of 2 failed", "http_req_failed: rate<0.01", "3.12 %",
    ],
    "aborted": ["🛑", "Load test aborted by user", "Aborted by user (failed)", "120"],
    "timed_out": ["⏱️", "Load test timed out"],
    "starting": ["⏳", "Load test starting", "Initializing"],
    "started": ["🚀", "Load test running", "Ada Lovelace", "Manual"],
    "threshold_failed": ["⚠️", "Threshold crossed", "http_req_duration: p(95)<500", "4,000"],
    "intermediate": ["📊", "Intermediate report", "4,000", "200.0 ms", "VUs"],
    "report_available": ["📄", "Report available", "1 of 2 failed"],
    "load_test_created": ["🆕", "Load test created: checkout", "Web shop"],
    "load_test_updated": ["✏️", "Load test updated", "“checkout-old” → “checkout”"],
    "load_test_deleted": ["🗑️", "Load test deleted: checkout"],
    "project_created": ["🆕", "Project created: Web shop"],
    "project_updated": ["✏️", "Project updated", "“Shop” → “Web shop”"],
    "project_deleted": ["🗑️", "Project deleted: Web shop"],
    "test_hook": ["🔔", "Test notification from loadbell", "set up correctly", "Acme"],
    "many_thresholds": ["67 of 200 failed", "more thresholds"],
    "hostile_names": ["<!channel> & @everyone", "<script>"],
}  # fmt: skip

# Cases whose message links to the run page.
RUN_CASES = {c for c, (event, _) in CASES.items() if event.is_run_event}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", list(CONFIGS))
def test_every_kind_renders_every_event(kind: str, case: str) -> None:
    """Each kind turns each event into a valid JSON post its service would accept."""
    request, payload = render(kind, case)
    assert request.url == URL
    assert request.method == "POST"
    assert request.headers["Content-Type"].startswith("application/json")
    STRUCTURE[kind](payload)
    text = visible(kind, payload)
    for expected in EXPECTED[case]:
        assert expected in text, f"{kind}/{case}: {expected!r} missing"
    assert (RUN_URL in "".join(strings(payload))) is (case in RUN_CASES)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_every_kind_expresses_all_events(kind: str) -> None:
    """Human-readable kinds can send every event, the test hook included."""
    kind_ = get_kind(kind)
    assert kind_.events(kind_.validate(CONFIGS[kind])) == frozenset(EventType)


# -- Slack -------------------------------------------------------------------------------


def test_slack_finished_run_layout() -> None:
    """A finished run reads: header, facts, figures, thresholds, button, footer."""
    _, payload = render("slack", "finished_failed")
    types = [b["type"] for b in payload["blocks"]]
    assert types == ["header", "section", "section", "section", "actions", "context"]
    header, about, figures, thresholds, actions, footer = payload["blocks"]
    assert header["text"] == {
        "type": "plain_text",
        "text": "❌ Load test failed: checkout",
        "emoji": True,
    }
    assert about["fields"][0] == {"type": "mrkdwn", "text": "*Project*\nWeb shop"}
    assert figures["text"]["text"] == "*Key figures*"
    assert thresholds["text"]["text"].splitlines() == [
        "*Thresholds: 1 of 2 failed*",
        "❌ `http_req_failed: rate&lt;0.01`",  # failed first
        "✅ `http_req_duration: p(95)&lt;500`",
    ]
    [button] = actions["elements"]
    assert button["url"] == RUN_URL and button["style"] == "danger"
    assert "<!date^1751553305^" in footer["elements"][0]["text"]
    assert payload["text"] == ("❌ Load test failed: checkout in Web shop — 1 threshold(s) failed")


def test_slack_many_thresholds_stay_within_limits() -> None:
    """200 thresholds give at most 50 blocks, sections of at most 3000 characters, the
    failed ones first and a line counting the rest."""
    _, payload = render("slack", "many_thresholds")
    blocks = payload["blocks"]
    assert len(blocks) <= slack.MAX_BLOCKS
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert all(len(s) <= slack.MAX_SECTION_TEXT for s in sections)
    listed = [line for s in sections for line in s.splitlines() if line.startswith(("✅", "❌"))]
    assert len(listed) == chat.MAX_THRESHOLD_LINES
    assert all(line.startswith("❌") for line in listed)  # 67 failed, so only failed fit
    more = next(b for b in blocks if b["type"] == "context")["elements"][0]["text"]
    assert more == "… and 160 more thresholds (27 failed, 133 passed); see the run page"


def test_slack_block_budget_holds_even_without_a_line_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Even if every threshold were listed, the message keeps to 50 blocks of 3000 chars."""
    monkeypatch.setattr(chat, "MAX_THRESHOLD_LINES", 100_000)
    msg = message("many_thresholds")
    run = msg.context["run"]
    run["metrics"]["thresholds"] = run["metrics"]["thresholds"] * 40  # 8000 long lines
    payload = slack.payload(msg)
    assert len(payload["blocks"]) == slack.MAX_BLOCKS
    assert slack_problems(payload) == []
    assert payload["blocks"][-1]["type"] == "context"  # the footer survives
    assert "more thresholds" in visible("slack", payload)


def test_slack_escapes_names_and_cuts_the_header() -> None:
    """Names cannot mention @channel or break mrkdwn; the header stays within 150 chars."""
    _, payload = render("slack", "hostile_names")
    mrkdwn = [s for s in strings(payload["blocks"][1:]) if "<!channel>" in s]
    assert mrkdwn == []
    assert "&lt;!channel&gt; &amp; @everyone" in payload["blocks"][1]["fields"][0]["text"]
    header = payload["blocks"][0]["text"]["text"]
    assert len(header) == slack.MAX_HEADER and header.endswith("…")


# -- Discord -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "severity"),
    [
        ("finished_passed", Severity.SUCCESS),  # green
        ("finished_failed", Severity.ERROR),  # red
        ("aborted", Severity.ERROR),
        ("threshold_failed", Severity.WARNING),  # yellow
        ("started", Severity.INFO),  # slate
        ("test_hook", Severity.INFO),
    ],
)
def test_discord_embed_color_follows_severity(case: str, severity: Severity) -> None:
    """The embed's integer color says how the run went."""
    _, payload = render("discord", case)
    assert payload["embeds"][0]["color"] == discord.COLORS[severity]


def test_discord_embed_links_and_fields() -> None:
    """The title links to the run; facts and figures are inline fields, thresholds not."""
    _, payload = render("discord", "finished_failed")
    [embed] = payload["embeds"]
    assert embed["title"] == "❌ Load test failed: checkout"
    assert embed["url"] == RUN_URL
    assert {"name": "Project", "value": "Web shop", "inline": True} in embed["fields"]
    assert {"name": "Apdex", "value": "0.81", "inline": True} in embed["fields"]
    assert embed["fields"][-1] == {
        "name": "Thresholds: 1 of 2 failed",
        "value": "❌ `http_req_failed: rate<0.01`\n✅ `http_req_duration: p(95)<500`",
        "inline": False,
    }
    assert embed["footer"] == {"text": "loadbell · test.finished"}


def test_discord_many_thresholds_fit_6000_characters() -> None:
    """200 long thresholds keep the embed under 6000 characters and 25 fields."""
    _, payload = render("discord", "many_thresholds")
    [embed] = payload["embeds"]
    assert discord._size(embed) <= discord.MAX_TOTAL
    assert len(embed["fields"]) <= discord.MAX_FIELDS
    assert embed["fields"][-1]["name"] == "More thresholds"


# -- Teams -------------------------------------------------------------------------------


def test_teams_card_envelope_and_parts() -> None:
    """The Workflows envelope holds an Adaptive Card with facts, thresholds and a button."""
    _, payload = render("teams", "finished_failed")
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    head = card["body"][0]
    assert head["style"] == "attention"
    assert head["items"][0]["text"] == "❌ Load test failed: checkout"
    facts = [b for b in card["body"] if b["type"] == "FactSet"]
    assert {"title": "Started by", "value": "Ada Lovelace"} in facts[0]["facts"]
    assert facts[-1]["facts"][0] == {"title": "❌", "value": "http_req_failed: rate<0.01"}
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "View run", "url": RUN_URL}]


def test_teams_card_without_run_has_no_button() -> None:
    """Events without a run page carry no dead button."""
    _, payload = render("teams", "project_created")
    assert "actions" not in payload["attachments"][0]["content"]


# -- HipChat -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "color"),
    [
        ("finished_passed", "green"),
        ("finished_failed", "red"),
        ("aborted", "red"),
        ("threshold_failed", "yellow"),
        ("started", "gray"),
        ("project_created", "gray"),
        ("test_hook", "purple"),  # stands out from real notifications
    ],
)
def test_hipchat_color_follows_severity(case: str, color: str) -> None:
    """The room notification's color says how the run went."""
    _, payload = render("hipchat", case)
    assert payload["color"] == color


def test_hipchat_message_is_escaped_html() -> None:
    """Names are escaped; the headline links to the run; notify defaults to true."""
    _, payload = render("hipchat", "hostile_names")
    assert "<script>" not in payload["message"]
    assert payload["message"].startswith(f'<b><a href="{RUN_URL}">❌ Load test failed: ')
    assert payload["notify"] is True and payload["from"] == "loadbell"


def test_hipchat_notify_and_token_options() -> None:
    """``notify: false`` is sent as is; a ``token`` goes in a masked Bearer header."""
    request, payload = render("hipchat", "started", notify=False, token="abc123")
    assert payload["notify"] is False
    assert request.headers["Authorization"] == "Bearer abc123"
    assert "Authorization" in request.secret_headers


def test_hipchat_many_thresholds_fit_10000_characters() -> None:
    """A huge threshold list is shortened until the message fits."""
    _, payload = render("hipchat", "many_thresholds")
    assert len(payload["message"]) <= hipchat.MAX_MESSAGE
    assert "more thresholds" in payload["message"]


# -- Mattermost --------------------------------------------------------------------------


def test_mattermost_attachment() -> None:
    """Slack-compatible attachment: colored, titled with a link, short fields."""
    _, payload = render("mattermost", "finished_passed")
    assert payload["text"] == "✅ Load test passed: checkout in Web shop"
    [att] = payload["attachments"]
    assert att["color"] == chat.HEX_COLORS[Severity.SUCCESS]
    assert att["title"] == "checkout · run 42"
    assert att["title_link"] == RUN_URL
    assert {"short": True, "title": "p95 response", "value": "480.0 ms"} in att["fields"]
    assert att["fields"][-1]["short"] is False
    assert att["ts"] == 1751553305
