"""Microsoft Teams through a Workflows webhook: an Adaptive Card in a message envelope.

Office 365 connectors ("Incoming Webhook") are retired; the user creates a flow from the
Workflows template "Post to a channel when a webhook request is received" and pastes its
URL. The flow reads ``attachments``, so the body is always the envelope
``{"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
"contentUrl": null, "content": <card>}]}``. The card sticks to Adaptive Cards 1.2
(TextBlock, FactSet, Container styles, Action.OpenUrl), which every Teams client renders.

Workflows answer 202 with an empty body; flows built to answer 200 and the legacy
connectors (body ``1``) are fine too. Legacy connectors report throttling inside a 200
body ("Microsoft Teams endpoint returned HTTP error 429"); that is retried. Teams allows
4 messages per second per webhook (and 60 per 30 s), the default pace here, and 28 KB per
message: a card over that drops threshold lines until it fits.
"""

from __future__ import annotations

from typing import Any

import orjson

from loadbell.channels import chat
from loadbell.channels.chat import ChatView
from loadbell.formats.summary import Severity
from loadbell.values import Message, Outcome, Rate

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.2"
MAX_BYTES = 28_000  # Teams refuses larger messages
THROTTLED = "Microsoft Teams endpoint returned HTTP error 429"

RATE = Rate(count=4, per=1.0)

# Adaptive Card container styles and text colors per severity.
STYLES: dict[Severity, str] = {
    Severity.SUCCESS: "good",
    Severity.ERROR: "attention",
    Severity.WARNING: "warning",
    Severity.INFO: "emphasis",
}


def _text(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **extra}


def _facts(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in pairs]}


def card(v: ChatView, threshold_limit: int | None = None) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "Container",
            "style": STYLES[v.severity],
            "bleed": True,
            "items": [_text(v.headline, size="Large", weight="Bolder")],
        }
    ]
    if v.about:
        body.append(_facts(v.about))
    body += [_text(note) for note in v.notes]
    if v.figures:
        body += [_text("Key figures", weight="Bolder", separator=True), _facts(v.figures)]
    if v.thresholds:
        rows, more = v.threshold_rows(threshold_limit)
        color = "Attention" if v.failed_thresholds else "Good"
        body.append(_text(v.threshold_heading, weight="Bolder", color=color, separator=True))
        if rows:
            body.append(_facts([(chat.mark(ok), expr) for expr, ok in rows]))
        if more:
            body.append(_text(more, isSubtle=True))
    body.append(_text(f"{v.footer} · {v.timestamp}", isSubtle=True, size="Small"))
    out: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "msteams": {"width": "Full"},
        "body": body,
    }
    if v.link:
        out["actions"] = [{"type": "Action.OpenUrl", "title": v.link_label, "url": v.link}]
    return out


def envelope(content: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": content}],
    }


def payload(message: Message) -> dict[str, Any]:
    v = chat.view(message)
    for limit in (None, 10, 0):  # fewer threshold lines until it fits
        out = envelope(card(v, limit))
        if len(orjson.dumps(out)) <= MAX_BYTES:
            break
    return out


def explain(outcome: Outcome) -> Outcome:
    """Teams' own rules: throttling inside a 200 body; Workflows' JSON errors."""
    if outcome.delivered:
        if THROTTLED in (outcome.body_excerpt or ""):
            return chat.retry_later(
                outcome,
                f"HTTP {outcome.status_code}: Teams throttled this webhook ('{THROTTLED}'); "
                "retrying",
                None,
            )
        return outcome
    detail = chat.json_error(outcome)
    return chat.explain(outcome, "Teams", detail) if detail else outcome


class TeamsKind(chat.UrlChatKind):
    """``teams``: config ``{"url": "<the Workflows webhook URL>"}``."""

    name = "teams"
    default_rate = RATE
    payload = staticmethod(payload)
    explain = staticmethod(explain)
