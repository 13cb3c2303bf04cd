"""The value types that several layers share, in a leaf module so that imports run one way.

A channel kind turns a :class:`Message` into an :class:`OutboundRequest`; the sender (or the
kind's own transport) turns that into an :class:`Outcome`. :class:`Rate` is a kind's pace
per destination and :class:`ConfigError` its refusal of a config; :func:`parse_retry_after`
reads a ``Retry-After`` for the sender and the Slack Web API client alike. Everything here
is a plain value: no I/O, and nothing imported from loadbell but ``domain``.

An attempt builds a message, a request and an outcome, thousands of times a second: those
three are slotted dataclasses, not frozen ones, whose ``__init__`` cost twice as much
(docs/decisions.md, D79). They are values all the same: nothing assigns to their fields,
and a changed one is made with ``dataclasses.replace``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from loadbell.domain.events import EventType


class ConfigError(ValueError):
    """Bad channel config. ``field`` is the dotted path shown to the user (``config.url``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(slots=True)
class Message:
    """Everything a kind may put in a notification, frozen when the event happened."""

    delivery_id: str  # stable across retries: receivers de-duplicate on it
    event_id: int
    event_type: EventType
    occurred_at: datetime
    context: Mapping[str, Any]  # see docs/templates.md for its shape
    public_url: str
    target: str | None = None  # a Slack channel, ... (None for kinds without targets)


@dataclass(slots=True)
class OutboundRequest:
    url: str
    body: bytes
    headers: dict[str, str]
    # Header names whose values must never be logged (the channel's custom headers, ...).
    secret_headers: frozenset[str] = field(default_factory=frozenset)
    method: str = "POST"
    mask_url: bool = True


class Verdict(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(slots=True)
class Outcome:
    """What one attempt came to: delivered, retry (after N s) or failed (with a reason)."""

    verdict: Verdict
    status_code: int | None = None
    body_excerpt: str | None = None  # first 4 KiB of the response body
    error: str | None = None
    retry_after: float | None = None  # seconds, from the receiver (Retry-After, retry_after)
    duration_ms: float = 0.0
    request_url: str | None = None
    request_headers: dict[str, str] = field(default_factory=dict)  # already masked
    # What the attempt log keeps of the exchange (delivery/exchange.py): the body sent (its
    # first 64 KiB) and its whole size, and the response's headers (None: no response).
    request_body: str | None = None
    request_body_bytes: int | None = None
    response_headers: dict[str, str] | None = None

    @property
    def delivered(self) -> bool:
        return self.verdict is Verdict.DELIVERED


@dataclass(frozen=True)
class Rate:
    """``count`` messages per ``per`` seconds, with bursts up to ``burst`` (default: count)."""

    count: int
    per: float  # seconds
    burst: int | None = None

    @property
    def capacity(self) -> float:
        return float(self.burst or self.count)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
