"""Discord webhooks: one embed, colored by severity, with mentions switched off.

The user pastes the webhook URL (``https://discord.com/api/webhooks/{id}/{token}``).
Discord answers 204 (200 with ``?wait=true``). A 429 carries ``retry_after`` (seconds, a
float) in its JSON body and usually a ``Retry-After`` header; the body's value wins. A 404
means the webhook was deleted and is never retried: Discord restricts senders that keep
calling dead webhooks.

Embed limits, enforced here: title 256, description 4096, at most 25 fields, field name
256 and value 1024, footer 2048, and 6000 characters across the whole embed. The default
pace is 5 messages per 2 s per webhook, what Discord's webhook buckets allow in practice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from loadbell.channels import chat
from loadbell.channels.chat import ChatView, truncate
from loadbell.formats.summary import Severity
from loadbell.values import Message, Outcome, Rate, Verdict

MAX_TITLE = 256
MAX_DESCRIPTION = 4096
MAX_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER = 2048
MAX_TOTAL = 6000  # title + description + field names and values + footer

RATE = Rate(count=5, per=2.0)

COLORS: dict[Severity, int] = {
    sev: int(hex_color.lstrip("#"), 16) for sev, hex_color in chat.HEX_COLORS.items()
}


def _field(name: str, value: str, inline: bool) -> dict[str, Any]:
    return {
        "name": truncate(name, MAX_FIELD_NAME),
        "value": truncate(value, MAX_FIELD_VALUE) or "—",
        "inline": inline,
    }


def _size(embed: Mapping[str, Any]) -> int:
    fields = embed.get("fields", [])
    return (
        len(embed.get("title", ""))
        + len(embed.get("description", ""))
        + sum(len(f["name"]) + len(f["value"]) for f in fields)
        + len(embed.get("footer", {}).get("text", ""))
    )


def embed(v: ChatView) -> dict[str, Any]:
    out: dict[str, Any] = {"title": truncate(v.headline, MAX_TITLE), "color": COLORS[v.severity]}
    if v.link:
        out["url"] = v.link  # the title links to the run page
    if v.notes:
        out["description"] = truncate("\n".join(v.notes), MAX_DESCRIPTION)
    fields = [_field(label, value, True) for label, value in [*v.about, *v.figures]]
    out["footer"] = {"text": truncate(v.footer, MAX_FOOTER)}
    out["timestamp"] = v.timestamp
    fields = fields[:MAX_FIELDS]
    out["fields"] = fields
    if v.thresholds:
        rows, more = v.threshold_rows()
        lines = [f"{chat.mark(ok)} `{expr}`" for expr, ok in rows]
        # Leave room for the "... and N more" field, its name included.
        budget = MAX_TOTAL - _size(out) - MAX_FIELD_NAME - 200
        slots = MAX_FIELDS - len(fields) - 1
        chunks, used = chat.pack_lines(lines, MAX_FIELD_VALUE, slots, budget)
        for i, chunk in enumerate(chunks):
            name = v.threshold_heading if i == 0 else f"{v.threshold_heading} (continued)"
            fields.append(_field(name, chunk, False))
        if used < len(lines):
            more = chat.more_line(v.thresholds[used:])
        if more:
            fields.append(_field("More thresholds", more, False))
    if _size(out) > MAX_TOTAL and "description" in out:  # only very long notes get here
        over = _size(out) - MAX_TOTAL
        out["description"] = truncate(out["description"], len(out["description"]) - over)
    return out


def payload(message: Message) -> dict[str, Any]:
    v = chat.view(message)
    return {
        "embeds": [embed(v)],
        "allowed_mentions": {"parse": []},  # never ping @everyone from a project name
    }


def explain(outcome: Outcome) -> Outcome:
    """Apply Discord's rules: ``retry_after`` from a 429 body, 404 final, error messages."""
    if outcome.delivered:
        return outcome
    body = chat.json_body(outcome)
    if outcome.status_code == 429:
        after = outcome.retry_after
        if isinstance(body, Mapping) and isinstance(body.get("retry_after"), (int, float)):
            after = max(float(body["retry_after"]), 0.0)
        scope = "global" if isinstance(body, Mapping) and body.get("global") else "webhook"
        wait = f"{after:g} s" if after is not None else "the backoff delay"
        return chat.retry_later(
            outcome, f"HTTP 429: Discord rate limit ({scope}); retrying after {wait}", after
        )
    if outcome.status_code == 404:
        outcome = replace(outcome, verdict=Verdict.FAILED)
        gone = chat.json_error(outcome) or "not found"
        return chat.explain(
            outcome, "Discord", f"{gone}: the webhook was deleted; create a new webhook URL"
        )
    detail = chat.json_error(outcome)
    if detail is None:
        return outcome
    if isinstance(body, Mapping) and body.get("errors"):  # which field of the form was wrong
        detail += f" {orjson.dumps(body['errors']).decode()[:300]}"
    return chat.explain(outcome, "Discord", detail)


class DiscordKind(chat.UrlChatKind):
    """``discord``: config ``{"url": "https://discord.com/api/webhooks/{id}/{token}"}``."""

    name = "discord"
    default_rate = RATE
    payload = staticmethod(payload)
    explain = staticmethod(explain)
