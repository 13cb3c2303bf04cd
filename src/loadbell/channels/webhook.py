"""The generic webhook channel: a URL, a wire format and optional custom headers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from yarl import URL

from loadbell.channels.base import ConfigError, Message
from loadbell.delivery.sender import OutboundRequest
from loadbell.domain.events import EventType
from loadbell.formats import loadimpact

# Headers no channel may set: the transport computes them, and a forged Host could steer
# the request past virtual-host routing.
FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "content-type"}
)
MAX_HEADERS = 20


def _loadimpact(legacy: bool) -> Callable[[Message], bytes]:
    return lambda message: loadimpact.encode(message, legacy=legacy)


# format name -> (events it can express, body encoder)
FORMATS: dict[str, tuple[frozenset[EventType], Callable[[Message], bytes]]] = {
    "loadimpact": (loadimpact.EVENTS, _loadimpact(False)),
    "loadimpact-legacy": (loadimpact.EVENTS, _loadimpact(True)),
}


def validate_url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field, "is required: give the http(s) URL that should receive POSTs")
    value = value.strip()
    try:
        url = URL(value)
    except ValueError as exc:
        raise ConfigError(field, f"is not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(field, "must be an absolute http:// or https:// URL")
    if len(value) > 2048:
        raise ConfigError(field, "is longer than 2048 characters")
    return str(value)


def validate_headers(value: Any, reserved: frozenset[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("config.headers", 'must be an object such as {"X-Token": "..."}')
    if len(value) > MAX_HEADERS:
        raise ConfigError("config.headers", f"at most {MAX_HEADERS} custom headers")
    clean: dict[str, str] = {}
    for name, val in value.items():
        field = f"config.headers.{name}"
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigError(field, "header names may use letters, digits, '-' and '_' only")
        if name.lower() in FORBIDDEN_HEADERS or name.lower() in reserved:
            raise ConfigError(field, "is set by loadbell itself and cannot be overridden")
        if not isinstance(val, str) or "\n" in val or "\r" in val:
            raise ConfigError(field, "the value must be a single-line string")
        clean[name] = val
    return clean


class WebhookKind:
    name = "webhook"
    secret_keys = frozenset({"url", "headers"})
    defaults: Mapping[str, Any] = {"format": "loadimpact", "headers": {}}

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(config) - {"url", "format", "headers"}
        if unknown:
            raise ConfigError(
                f"config.{sorted(unknown)[0]}", "unknown key; webhook takes url, format, headers"
            )
        fmt = config.get("format") or self.defaults["format"]
        if fmt not in FORMATS:
            raise ConfigError("config.format", f"use one of {', '.join(FORMATS)}")
        return {
            "url": validate_url(config.get("url"), "config.url"),
            "format": fmt,
            "headers": validate_headers(config.get("headers"), loadimpact.RESERVED_HEADERS),
        }

    def events(self, config: Mapping[str, Any]) -> frozenset[EventType]:
        return FORMATS[config.get("format") or "loadimpact"][0]

    def render(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest:
        encode = FORMATS[config["format"]][1]
        custom = dict(config.get("headers") or {})
        return OutboundRequest(
            url=config["url"],
            body=encode(message),
            headers={**loadimpact.headers(message), **custom},
            secret_headers=frozenset(custom),
        )
