"""The explicit registry of channel kinds. Adding a kind means adding one line here."""

from __future__ import annotations

from enum import StrEnum

from loadbell.channels.base import ChannelKind
from loadbell.channels.webhook import WebhookKind


class KindName(StrEnum):
    WEBHOOK = "webhook"


KINDS: dict[KindName, ChannelKind] = {
    KindName.WEBHOOK: WebhookKind(),
}


def get_kind(name: str) -> ChannelKind:
    try:
        return KINDS[KindName(name)]
    except ValueError:
        raise KeyError(
            f"unknown channel kind '{name}'; available kinds: {', '.join(k.value for k in KINDS)}"
        ) from None
