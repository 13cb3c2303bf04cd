"""How the Integrations page lists a channel: where it sends (its summary, the values in
effect in a project, overridden ones marked) and how its deliveries fare (its health: last
success, last failure, success rate over 24 hours, and the badge's colour)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from loadbell.channels.registry import get_kind
from loadbell.domain import health
from loadbell.domain.inheritance import Effective, Source
from loadbell.services import channel_config as cc


@dataclass(frozen=True)
class Shown:
    """One value of a channel's summary on the Integrations page (secrets masked)."""

    text: str
    overridden: bool = False  # the project's own value, not the organization's


@dataclass(frozen=True)
class Health:
    """A listed channel's health, as its badge and figures show it."""

    state: str = health.HEALTHY  # healthy | failing | disabled (domain/health.py)
    text: str = ""  # the state's badge: "Disabled for failing", "Failing: 3 ..." or ""
    colour: str = health.GREY  # green | amber | red | grey: the success rate's badge
    rate_text: str = "No deliveries in 24 h"
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None


@dataclass(frozen=True)
class Listed:
    """One channel on the Integrations page."""

    id: int
    name: str
    state: str  # "set up" | "disabled" | "inherited" | "overridden"
    state_text: str
    summary: list[Shown]
    href: str
    level: str  # "organization" | "project"
    health: Health = field(default_factory=Health)


SUMMARY_KEYS = ("url", "webhook_url", "workspace", "targets", "to")


def summary_of(config: dict[str, Any], overridden: frozenset[str] = frozenset()) -> list[Shown]:
    """The values that say where a channel sends: its URL, workspace, targets, recipients."""
    out = []
    for key in SUMMARY_KEYS:
        value = config.get(key)
        if value:
            text = ", ".join(value) if isinstance(value, list) else str(value)
            out.append(Shown(text, key in overridden))
    return out


def seen_summary(kind: str, seen: Effective) -> list[Shown]:
    """The summary of an organization channel as a project sees it (``as_seen_by``): the
    values in effect there, secrets masked, each marked when the project overrides it."""
    config = cc.masked(get_kind(kind), seen.config)
    overridden = frozenset(k for k, src in seen.sources.items() if src is Source.PROJECT)
    return summary_of(config, overridden)


def health_of(ch: dict[str, Any]) -> Health:
    """The health of a listed channel (``ch["health"]``, store/health.py) as the list
    shows it."""
    kept = ch["health"]
    state = kept["state"]
    if state == health.DISABLED:
        text = "Disabled for failing"
    elif state == health.FAILING:
        n = kept["consecutive_failures"]
        text = f"Failing: {n} failed deliver{'y' if n == 1 else 'ies'} in a row"
    else:
        text = ""
    rate = kept.get("success_rate_24h")
    return Health(
        state=state,
        text=text,
        colour=health.colour(state, rate),
        # Whole percents, but never "100 %" for a rate that is not 1, nor "0 %" above 0.
        rate_text="No deliveries in 24 h" if rate is None else f"{_percent(rate)} delivered (24 h)",
        last_success_at=kept.get("last_success_at"),
        last_failure_at=kept.get("last_failure_at"),
    )


def _percent(rate: float) -> str:
    shown = round(rate * 100)
    if shown == 100 and rate < 1:
        return "99.9 %" if rate >= 0.999 else "99 %"
    if shown == 0 and rate > 0:
        return "<1 %"
    return f"{shown} %"
