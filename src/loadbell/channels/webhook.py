"""The generic webhook channel: a URL, a wire format, custom headers and optional signing.

Config keys: ``url``, ``format`` (``loadimpact``, ``loadimpact-legacy``, ``loadmance``,
``k6cloud``, ``template``), ``headers``, ``template`` (the Jinja2 body of the ``template`` format),
``source`` (the ``loadmance`` envelope's source), ``signing_secrets`` (Standard Webhooks)
and ``rate_limit`` (per-URL pacing; unlimited by default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yarl import URL

from loadbell.channels.rate_limit import validate_rate_limit
from loadbell.domain.events import EventType
from loadbell.domain.text import control_character
from loadbell.formats import k6cloud, loadimpact, loadmance, signing, template
from loadbell.security.addresses import host_problem
from loadbell.values import ConfigError, Message, OutboundRequest, Rate

# Headers no channel may set: the transport computes them, and a forged Host could steer
# the request past virtual-host routing.
FORBIDDEN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "content-type"}
)
MAX_HEADERS = 20
# characters of one custom header's value. Proxies and servers refuse longer header lines
# (nginx and Apache stop at 8 KiB a line), so a longer value would fail every delivery; 4096
# fits any token or signature in use and leaves room for the name and loadbell's own headers.
MAX_HEADER_VALUE = 4096
MAX_SOURCE_CHARS = 100

CONFIG_KEYS = ("url", "format", "headers", "template", "source", "signing_secrets", "rate_limit")


@dataclass(frozen=True)
class Format:
    """One wire dialect: what it can express, its body, and the headers it owns."""

    events: frozenset[EventType]
    encode: Callable[[Message, Mapping[str, Any]], bytes]
    headers: Callable[[Message, Mapping[str, Any]], dict[str, str]]
    reserved: frozenset[str] = frozenset()  # lower-case header names custom headers may not set
    content_type_settable: bool = False  # may custom headers choose the Content-Type?


_NONE: frozenset[str] = frozenset()


def _loadimpact(legacy: bool) -> Format:
    return Format(
        events=loadimpact.EVENTS,
        encode=lambda message, _: loadimpact.encode(message, legacy=legacy),
        headers=lambda message, _: loadimpact.headers(message),
        reserved=loadimpact.RESERVED_HEADERS,
    )


def _template_body(message: Message, config: Mapping[str, Any]) -> bytes:
    return template.render(config["template"], message).encode()


def _template_headers(message: Message, config: Mapping[str, Any]) -> dict[str, str]:
    return {"Content-Type": template.content_type(config), "User-Agent": loadmance.USER_AGENT}


FORMATS: dict[str, Format] = {
    "loadimpact": _loadimpact(False),
    "loadimpact-legacy": _loadimpact(True),
    "loadmance": Format(
        events=loadmance.EVENTS,
        encode=loadmance.encode,
        headers=lambda message, _: loadmance.headers(message),
    ),
    "k6cloud": Format(
        events=k6cloud.EVENTS,
        encode=k6cloud.encode,
        headers=lambda message, _: k6cloud.headers(message),
        reserved=k6cloud.RESERVED_HEADERS,
    ),
    # A template can say anything about any event, the test hook included.
    "template": Format(
        events=frozenset(EventType),
        encode=_template_body,
        headers=_template_headers,
        content_type_settable=True,
    ),
}


def validate_url(value: Any, field: str) -> str:
    """The one check of every http(s) URL a channel kind sends to (webhook, chat kinds, the
    Slack app's API base). Its host must be a canonical IP address or a DNS name: anything
    else fails on every attempt, so it is refused here, when saved."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field, "is required: give the http(s) URL that should receive POSTs")
    value = value.strip()
    # yarl drops tabs and newlines silently (http://a<TAB>b/ goes to host "ab"), so the
    # URL that was saved would not be the one the sender uses.
    if any(c < " " or c == "\x7f" for c in value):
        raise ConfigError(field, "contains a tab, newline or other control character; remove it")
    try:
        url = URL(value)
    except ValueError as exc:
        raise ConfigError(field, f"is not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https"):
        raise ConfigError(field, "must be an absolute http:// or https:// URL")
    if len(value) > 2048:
        raise ConfigError(field, "is longer than 2048 characters")
    problem = host_problem(url.raw_host or "")
    if problem is not None:
        raise ConfigError(field, problem)
    return str(value)


def validate_headers(
    value: Any, reserved: frozenset[str], *, allow_content_type: bool = False
) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("config.headers", 'must be an object such as {"X-Token": "..."}')
    if len(value) > MAX_HEADERS:
        raise ConfigError("config.headers", f"at most {MAX_HEADERS} custom headers")
    forbidden = FORBIDDEN_HEADERS - ({"content-type"} if allow_content_type else set())
    clean: dict[str, str] = {}
    for name, val in value.items():
        field = f"config.headers.{name}"
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigError(
                field,
                "header names may use letters, digits, '-' and '_' only (no spaces or "
                "control characters)",
            )
        if name.lower() in forbidden or name.lower() in reserved:
            hint = (
                " (the template format lets you choose it)"
                if name.lower() == "content-type"
                else ""
            )
            raise ConfigError(field, f"is set by loadbell itself and cannot be overridden{hint}")
        if not isinstance(val, str):
            raise ConfigError(field, "the value must be a single-line string")
        # A NUL or line break in a value would make every request of the channel fail.
        found = control_character(val)
        if found is not None:
            raise ConfigError(
                field,
                f"the value contains the control character {found} (a tab, newline, NUL, "
                "...); give one line of printable text",
            )
        if len(val) > MAX_HEADER_VALUE:
            raise ConfigError(
                field,
                f"the value is {len(val):,} characters long; at most {MAX_HEADER_VALUE:,} are "
                "allowed (servers and proxies refuse longer header lines)",
            )
        clean[name] = val
    return clean


def _validate_source(value: Any) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not value.strip()
        or len(value) > MAX_SOURCE_CHARS
        or "\n" in value
    ):
        raise ConfigError(
            "config.source",
            f"must be a one-line name of 1 to {MAX_SOURCE_CHARS} characters "
            f"(default '{loadmance.DEFAULT_SOURCE}')",
        )
    return value.strip()


class WebhookKind:
    name = "webhook"
    secret_keys = frozenset({"url", "headers", "signing_secrets"})
    defaults: Mapping[str, Any] = {"format": "loadimpact", "headers": {}}

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(config) - set(CONFIG_KEYS)
        if unknown:
            raise ConfigError(
                f"config.{sorted(unknown)[0]}",
                f"unknown key; webhook takes {', '.join(CONFIG_KEYS)}",
            )
        fmt_name = config.get("format") or self.defaults["format"]
        fmt = FORMATS.get(fmt_name) if isinstance(fmt_name, str) else None
        if fmt is None:
            raise ConfigError("config.format", f"use one of {', '.join(FORMATS)}")
        clean: dict[str, Any] = {
            "url": validate_url(config.get("url"), "config.url"),
            "format": fmt_name,
            "headers": validate_headers(
                config.get("headers"),
                fmt.reserved | signing.HEADER_NAMES,
                allow_content_type=fmt.content_type_settable,
            ),
        }
        source = _validate_source(config.get("source"))
        if source is not None:
            clean["source"] = source
        secrets = signing.validate_secrets(config.get("signing_secrets"))
        if secrets:
            clean["signing_secrets"] = secrets
        try:
            rate = validate_rate_limit(config.get("rate_limit"))
        except ValueError as exc:
            field, _, message = str(exc).partition(": ")
            raise ConfigError(field, message) from None
        if rate is not None:
            clean["rate_limit"] = rate
        source_text = config.get("template")
        if source_text is not None:
            if not isinstance(source_text, str) or not source_text.strip():
                raise ConfigError(template.FIELD, "must be a non-empty Jinja2 template string")
            # Kept under any format, so that switching back to `template` finds it; it is
            # compiled when it is in use (switching back does it too). Rendering each
            # subscribed event's sample needs the events: see check_events.
            if fmt_name == "template":
                template.compile_template(source_text)
            clean["template"] = source_text
        elif fmt_name == "template":
            raise ConfigError(
                template.FIELD,
                "is required with format 'template': give the Jinja2 template of the body "
                "(see docs/templates.md)",
            )
        return clean

    def events(self, config: Mapping[str, Any]) -> frozenset[EventType]:
        return FORMATS[config.get("format") or "loadimpact"].events

    def check_events(self, config: Mapping[str, Any], events: Sequence[EventType]) -> None:
        """A template must render the sample of every event the channel receives."""
        if config.get("format") == "template":
            template.check(config["template"], template.content_type(config), events)

    def render(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest:
        fmt = FORMATS[config["format"]]
        body = fmt.encode(message, config)
        headers = fmt.headers(message, config)
        custom = config.get("headers") or {}
        if custom:  # custom headers replace the format's own of the same name
            mine = {name.lower() for name in custom}
            headers = {k: v for k, v in headers.items() if k.lower() not in mine}
            headers.update(custom)
        if config.get("signing_secrets"):
            headers.update(signing.headers(message.delivery_id, body, config["signing_secrets"]))
        return OutboundRequest(
            url=config["url"],
            body=body,
            headers=headers,
            secret_headers=frozenset(custom) if custom else _NONE,
        )

    # Paced: no default limit; ``config.rate_limit`` sets one per URL.
    def rate(self, config: Mapping[str, Any]) -> Rate | None:
        return None

    def destination(self, message: Message, config: Mapping[str, Any]) -> str:
        return str(config["url"])
