"""Mattermost and Rocket.Chat incoming webhooks: Slack-compatible ``text`` plus
``attachments``.

Neither server reads Slack's Block Kit (``blocks`` is silently dropped), so the message is
the older Slack attachment format both understand: a colored bar with a title linking to
the run, short fields for the facts and figures, and a long field listing the thresholds.
Bold text is left out on purpose: Mattermost writes it ``**x**``, Rocket.Chat ``*x*``.

Mattermost answers 200 ``ok``; Rocket.Chat answers 200 ``{"success": true}``. Their errors
are JSON (``{"message": ...}`` and ``{"success": false, "error": ...}``) and are kept in
the attempt log. There is no default pace: both servers' limits are set by their admins;
use ``rate_limit`` when yours has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from loadbell.channels import chat
from loadbell.channels.chat import ChatView, truncate
from loadbell.values import Message, Outcome, Verdict

MAX_TEXT = 4000  # Mattermost posts hold 16,383 characters; a notification needs far less
MAX_FIELD_VALUE = 8000


def attachment(message: Message, v: ChatView) -> dict[str, Any]:
    run = message.context.get("run") or {}
    load_test = (message.context.get("load_test") or {}).get("name")
    title = f"{load_test} · run {run['id']}" if run and load_test else v.title
    fields = [{"short": True, "title": t, "value": value} for t, value in [*v.about, *v.figures]]
    if v.thresholds:
        rows, more = v.threshold_rows()
        lines = [f"{chat.mark(ok)} `{expr}`" for expr, ok in rows] + ([more] if more else [])
        value = "\n".join(lines)
        fields.append(
            {
                "short": False,
                "title": v.threshold_heading,
                "value": truncate(value, MAX_FIELD_VALUE),
            }
        )
    out: dict[str, Any] = {
        "fallback": truncate(f"{v.cue} {v.text}", MAX_TEXT),
        "color": chat.HEX_COLORS[v.severity],
        "title": title,
    }
    if v.link:
        out["title_link"] = v.link
    if v.notes:
        out["text"] = "\n".join(v.notes)
    out["fields"] = fields
    out["footer"] = v.footer
    out["ts"] = int(v.occurred_at.timestamp())
    return out


def payload(message: Message) -> dict[str, Any]:
    v = chat.view(message)
    return {
        "text": truncate(f"{v.cue} {v.text}", MAX_TEXT),
        "attachments": [attachment(message, v)],
    }


def explain(outcome: Outcome) -> Outcome:
    body = chat.json_body(outcome)
    if outcome.delivered:
        if isinstance(body, Mapping) and body.get("success") is False:  # Rocket.Chat
            error = chat.json_error(outcome) or "success: false"
            return chat.explain(replace(outcome, verdict=Verdict.FAILED), "the server", error)
        return outcome
    detail = chat.json_error(outcome)
    return chat.explain(outcome, "the server", detail) if detail else outcome


class MattermostKind(chat.UrlChatKind):
    """``mattermost`` (Rocket.Chat too): config ``{"url": "https://chat.example.com/hooks/..."}``."""

    name = "mattermost"
    # Self-hosted: the server's admin sets the limit; `config.rate_limit` can follow it.
    payload = staticmethod(payload)
    explain = staticmethod(explain)
