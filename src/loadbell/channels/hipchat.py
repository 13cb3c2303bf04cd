"""HipChat room notifications (API v2), for self-hosted HipChat-compatible servers.

HipChat Cloud shut down on 15 February 2019; this kind stays for HipChat Server and Data
Center installations and for servers that speak the same API. The user gives the room
notification URL, token included
(``https://hipchat.example.com/v2/room/{room}/notification?auth_token=...``), or the URL
plus ``token``, which goes in ``Authorization: Bearer``.

The body is ``{"color", "message", "notify", "message_format", "from"}``: the color follows
the severity (success green, error red, warning yellow, info gray; the test message
purple), the message is HTML (HipChat allows a, b, i, strong, em, br, img, pre, code,
lists and tables) of at most 10,000 characters. HipChat answers 204 No Content.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from loadbell.channels import chat
from loadbell.channels.chat import ChatView
from loadbell.domain.events import EventType
from loadbell.formats.summary import Severity
from loadbell.values import ConfigError, Message, OutboundRequest, Outcome, Rate

MAX_MESSAGE = 10_000
SENDER = "loadbell"  # shown beside the token's name

COLORS: dict[Severity, str] = {
    Severity.SUCCESS: "green",
    Severity.ERROR: "red",
    Severity.WARNING: "yellow",
    Severity.INFO: "gray",
}
TEST_COLOR = "purple"


def _pairs(pairs: list[tuple[str, str]]) -> str:
    return " · ".join(f"{escape(label)}: <b>{escape(value)}</b>" for label, value in pairs)


def html(v: ChatView, threshold_limit: int | None = None) -> str:
    title = escape(v.headline)
    parts = [f'<b><a href="{escape(v.link)}">{title}</a></b>' if v.link else f"<b>{title}</b>"]
    if v.about:
        parts.append(_pairs(v.about))
    parts += [escape(note) for note in v.notes]
    if v.figures:
        parts.append(_pairs(v.figures))
    if v.thresholds:
        rows, more = v.threshold_rows(threshold_limit)
        items = "".join(f"<li>{chat.mark(ok)} <code>{escape(e)}</code></li>" for e, ok in rows)
        parts.append(
            f"<b>{escape(v.threshold_heading)}</b>" + (f"<ul>{items}</ul>" if items else "")
        )
        if more:
            parts.append(f"<i>{escape(more)}</i>")
    return "<br>".join(parts)


def payload(message: Message, notify: bool = True) -> dict[str, Any]:
    v = chat.view(message)
    for limit in (None, 10, 0):  # fewer threshold lines until it fits
        text = html(v, limit)
        if len(text) <= MAX_MESSAGE:
            break
    color = TEST_COLOR if v.event is EventType.TEST_NOTIFICATION_CHANNEL else COLORS[v.severity]
    return {
        "color": color,
        "message": chat.truncate(text, MAX_MESSAGE),
        "notify": notify,
        "message_format": "html",
        "from": SENDER,
    }


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError("config.notify", "must be true or false")
    return value


def _token(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n "):
        raise ConfigError("config.token", "must be the room notification token, one word")
    return value.strip()


class HipChatKind:
    """``hipchat``: config ``{"url": "<room notification URL>"}``; optional ``notify``
    (default true: HipChat alerts the room's members) and ``token``."""

    name = "hipchat"
    secret_keys = frozenset({"url", "token"})
    defaults: Mapping[str, Any] = {"notify": True}

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return chat.validate_config("hipchat", config, "url", {"notify": _bool, "token": _token})

    def events(self, config: Mapping[str, Any]) -> frozenset[EventType]:
        return chat.CHAT_EVENTS

    def render(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest:
        token = config.get("token")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = payload(message, notify=bool(config.get("notify", True)))
        return chat.json_request(config["url"], body, headers, frozenset(headers))

    def interpret(self, outcome: Outcome) -> Outcome:
        if outcome.delivered:
            return outcome
        detail = chat.json_error(outcome)
        return chat.explain(outcome, "HipChat", detail) if detail else outcome

    def rate(self, config: Mapping[str, Any]) -> Rate | None:
        return None  # self-hosted: the server's admin sets the limit; `rate_limit` follows it

    def destination(self, message: Message, config: Mapping[str, Any]) -> str:
        return chat.destination(config["url"])
