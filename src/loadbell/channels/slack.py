"""Slack incoming webhooks: a Block Kit message with a plain-text ``text`` fallback.

The user pastes the webhook URL Slack gave them (``https://hooks.slack.com/services/...``).
Slack answers 200 with the body ``ok``; errors are a plain-text code (``invalid_payload``,
``channel_not_found``, ``no_service``, ...) with a 4xx status, which the attempt log keeps
with a hint. 404 and 410 mean the channel is gone and are never retried; 429 is retried
after ``Retry-After``.

Slack's Block Kit limits, enforced here: at most 50 blocks, a section's text 3000
characters, at most 10 fields of 2000 characters each, a header 150 characters.
Slack takes about one message per second per webhook, so that is the default pace
(bursts of 3), per webhook URL.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from loadbell.channels import chat
from loadbell.channels.chat import ChatView, truncate
from loadbell.domain.events import EventType
from loadbell.formats.summary import Severity
from loadbell.values import Message, Outcome, Rate, Verdict

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER = 150
MAX_BUTTON_TEXT = 75
MAX_URL = 3000
MAX_FALLBACK = 3000  # Slack cuts `text` at 40,000; a notification preview needs far less

RATE = Rate(count=1, per=1.0, burst=3)

# What a Slack channel that names no events subscribes to: the run's lifecycle (it runs,
# it finished, aborted or failed; a threshold failed; it regressed), and a channel of the
# organization disabled for failing. Not intermediate reports, the final report's arrival
# or load test and project changes: in a chat room those bury the results (issue 14).
# Both Slack kinds (incoming webhook and app) use it; the API and the Setup form both.
DEFAULT_EVENTS = frozenset(
    {
        EventType.TEST_STARTED,
        EventType.TEST_FINISHED,
        EventType.TEST_THRESHOLD_FAILED,
        EventType.TEST_REGRESSED,
        EventType.CHANNEL_DISABLED,
    }
)

# Slack's plain-text error codes for incoming webhooks -> what the user should do.
ERRORS: dict[str, str] = {
    "invalid_payload": "the message was malformed; this is a loadbell bug, please report it",
    "invalid_blocks": "Slack refused the blocks; this is a loadbell bug, please report it",
    "too_many_attachments": "the message had too many attachments",
    "user_not_found": "the webhook's user no longer exists; create a new incoming webhook",
    "channel_not_found": "the webhook's channel no longer exists; create a new incoming webhook",
    "channel_is_archived": "the channel is archived; unarchive it or use another webhook",
    "action_prohibited": "a workspace admin restricted posting to this channel",
    "posting_to_general_channel_denied": "only admins may post to this channel; use another",
    "no_service": "the webhook is disabled or was removed (app uninstalled?); "
    "create a new webhook URL",
    "no_team": "the workspace is gone or disabled; create a new webhook URL",
    "team_disabled": "the workspace was disabled",
    "invalid_token": "the URL's token is invalid; copy the webhook URL from Slack again",
    "rollup_error": "Slack had an internal error; loadbell retries",
}
_STYLES: dict[Severity, dict[str, str]] = {
    Severity.SUCCESS: {"style": "primary"},
    Severity.ERROR: {"style": "danger"},
}
_CODE = re.compile(r"^[a-z][a-z0-9_]*$")


def escape(text: str) -> str:
    """Slack's mrkdwn reserves ``&``, ``<`` and ``>`` (they start links and mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fit(text: str, limit: int) -> str:
    """Truncate escaped mrkdwn without leaving half an ``&amp;`` behind."""
    if len(text) <= limit:
        return text
    cut = truncate(text, limit)
    amp = cut.rfind("&", max(len(cut) - 6, 0))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp].rstrip() + "…"
    return cut


def _mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _fit(text, limit)}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _field_sections(pairs: list[tuple[str, str]], heading: str | None) -> list[dict[str, Any]]:
    """Label/value pairs as section fields, ten to a section."""
    blocks: list[dict[str, Any]] = []
    for start in range(0, len(pairs), MAX_FIELDS):
        chunk = pairs[start : start + MAX_FIELDS]
        block: dict[str, Any] = {"type": "section"}
        if heading and start == 0:
            block["text"] = _mrkdwn(heading)
        block["fields"] = [
            _mrkdwn(f"*{escape(label)}*\n{escape(value)}", MAX_FIELD_TEXT) for label, value in chunk
        ]
        blocks.append(block)
    return blocks


def _date(v: ChatView) -> str:
    # Slack shows <!date^...> in each reader's own time zone; the part after | is the fallback.
    epoch = int(v.occurred_at.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} at {{time}}|{v.timestamp}>"


def blocks(v: ChatView) -> list[dict[str, Any]]:
    head: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(v.headline, MAX_HEADER), "emoji": True},
        }
    ]
    head += _field_sections(v.about, None)
    if v.notes:
        head.append(_section("\n".join(escape(n) for n in v.notes)))
    if v.figures:
        head += _field_sections(v.figures, "*Key figures*")

    tail: list[dict[str, Any]] = []
    if v.link and len(v.link) <= MAX_URL:
        tail.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "view_run",
                        "text": {
                            "type": "plain_text",
                            "text": truncate(v.link_label, MAX_BUTTON_TEXT),
                        },
                        "url": v.link,
                        **_STYLES.get(v.severity, {}),
                    }
                ],
            }
        )
    tail.append(
        {
            "type": "context",
            "elements": [_mrkdwn(f"{escape(v.footer)} · {_date(v)}")],
        }
    )

    middle: list[dict[str, Any]] = []
    if v.thresholds:
        rows, more = v.threshold_rows()
        lines = [f"{chat.mark(ok)} `{escape(expr)}`" for expr, ok in rows]
        budget = MAX_BLOCKS - len(head) - len(tail) - 1  # one left for the "more" line
        heading = f"*{escape(v.threshold_heading)}*"
        chunks, used = chat.pack_lines([heading, *lines], MAX_SECTION_TEXT, budget)
        middle = [_section(c) for c in chunks]
        if used - 1 < len(lines):  # ran out of blocks: say how many were left out
            more = chat.more_line(v.thresholds[used - 1 :])
        if more:
            middle.append({"type": "context", "elements": [_mrkdwn(escape(more))]})
    return (head + middle + tail)[:MAX_BLOCKS]


def payload(message: Message) -> dict[str, Any]:
    v = chat.view(message)
    return {
        "text": _fit(escape(f"{v.cue} {v.text}"), MAX_FALLBACK),
        "blocks": blocks(v),
    }


def explain(outcome: Outcome) -> Outcome:
    """Turn Slack's plain-text error code into a hint; keep the verdict rules of Slack."""
    if outcome.delivered or outcome.status_code is None:
        return outcome
    if outcome.status_code == 429:
        wait = f"{outcome.retry_after:g} s" if outcome.retry_after is not None else "a while"
        return replace(outcome, error=f"HTTP 429: Slack rate limit; retrying after {wait}")
    first = (outcome.body_excerpt or "").strip().split("\n", 1)[0].strip()
    if outcome.status_code in (404, 410):  # channel gone: retrying cannot help
        outcome = replace(outcome, verdict=Verdict.FAILED)
    if _CODE.match(first):
        hint = ERRORS.get(first)
        return chat.explain(outcome, "Slack", f"{first}: {hint}" if hint else first)
    return outcome


class SlackKind(chat.UrlChatKind):
    """``slack``: config ``{"webhook_url": "https://hooks.slack.com/services/..."}``."""

    name = "slack"
    url_key = "webhook_url"
    secret_keys = frozenset({"webhook_url"})
    default_events = DEFAULT_EVENTS
    default_rate = RATE
    payload = staticmethod(payload)
    explain = staticmethod(explain)
