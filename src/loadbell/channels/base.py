"""The contract every channel kind implements.

A kind renders a :class:`loadbell.values.Message` into a
:class:`loadbell.values.OutboundRequest`, and refuses a bad config with
:class:`loadbell.values.ConfigError`. To add a kind: write a module with a class that
satisfies :class:`ChannelKind`, then add it to ``KINDS`` in ``registry.py``. A kind owns its
config schema and its rendering and nothing else: it never does I/O. The worker sends what
``render`` returns through the one shared sender, and applies the retry policy and the
attempt log for you.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from loadbell.domain.events import EventType
from loadbell.values import Message, OutboundRequest, Outcome, Rate


class ChannelKind(Protocol):
    """One kind of channel (webhook, slack, ...).

    ``secret_keys`` are the config keys stored encrypted and masked in responses.
    ``defaults`` fill keys the user leaves out.
    """

    name: str
    secret_keys: frozenset[str]
    defaults: Mapping[str, Any]

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Return the cleaned config or raise :class:`ConfigError` naming the field."""
        ...

    def events(self, config: Mapping[str, Any]) -> frozenset[EventType]:
        """The events this config can express (subscribing to others is a 422)."""
        ...

    def render(self, message: Message, config: Mapping[str, Any]) -> OutboundRequest:
        """Build the request for one delivery. Must be pure and fast: it runs per attempt."""
        ...


class Transport(Protocol):
    """Optional, for kinds that do not speak HTTP (email over SMTP, Apprise).

    When a kind has ``send``, the worker calls it instead of the shared HTTP sender. It
    must never raise for a failed delivery: return an Outcome (delivered / retry / failed),
    and keep the attempt log's fields filled (request_url masked, request_headers masked).
    """

    async def send(
        self, message: Message, config: Mapping[str, Any], timeout: float
    ) -> Outcome: ...


class Interpreter(Protocol):
    """Optional: correct the shared sender's verdict from the kind's own response rules
    (Discord's ``retry_after`` body, Teams reporting throttling inside a 200 body, ...)."""

    def interpret(self, outcome: Outcome) -> Outcome: ...


class Completeness(Protocol):
    """Optional: what an effective config still lacks before it can send (the Slack app
    before its install). The test hook refuses with these phrases instead of sending."""

    def missing(self, config: Mapping[str, Any]) -> list[str]: ...


class EventsCheck(Protocol):
    """Optional: on save, check that ``config`` can render each of ``events`` (the ones
    the channel subscribes to), from the samples of ``formats/samples.py``. A webhook
    template that fails for ``project.created`` is refused here rather than at delivery.
    Raise :class:`ConfigError` naming the field and the event."""

    def check_events(self, config: Mapping[str, Any], events: Sequence[EventType]) -> None: ...


class DefaultEvents(Protocol):
    """Optional: the events a channel subscribes to when it names none (``events``
    omitted). Without it, a channel subscribes to every event its config can express."""

    default_events: frozenset[EventType]


class Paced(Protocol):
    """Optional: the kind's default rate per destination (config may override it)."""

    def rate(self, config: Mapping[str, Any]) -> Rate | None: ...

    def destination(self, message: Message, config: Mapping[str, Any]) -> str: ...


def targets_of(config: Mapping[str, Any]) -> list[str | None]:
    """One delivery per target. Kinds without targets get a single delivery."""
    raw = config.get("targets")
    if isinstance(raw, str) and raw.strip():
        return list(dict.fromkeys(raw.split()))
    return [None]
