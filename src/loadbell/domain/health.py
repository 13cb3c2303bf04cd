"""A channel's health and when it is disabled for failing (pure: no I/O).

``config.auto_disable`` is valid for every kind: ``{"after_failures": 20, "after_hours":
24}`` by default, ``null`` turns it off. A channel is disabled when both hold: that many
consecutive deliveries failed for good (all attempts spent), and the first of them failed at
least that many hours ago. A success resets the count. Disabling stops the channel: its
pending deliveries end ``skipped`` with :func:`disabled_reason`, and later events are
recorded as ``skipped`` deliveries with the same reason.

Inheritance: a project override may set its own thresholds. Value-level inheritance drops
empty values, so ``null`` could not be told from "not set": "off" is stored as ``false``
and shown as ``null`` (:func:`shown`). An override turns it off with ``false``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

KEY = "auto_disable"
DEFAULT: dict[str, Any] = {"after_failures": 20, "after_hours": 24}
OFF = False  # how "null" is stored (see the module docstring)

HEALTHY = "healthy"
FAILING = "failing"
DISABLED = "disabled"

# Why a delivery was skipped; noise control's reasons ("muted", "quiet hours") join these.
REASON_DISABLED = "channel_disabled"


@dataclass(frozen=True)
class AutoDisable:
    after_failures: int
    after_hours: float

    def reached(self, failures: int, first_failure_at: float | None, now: float) -> bool:
        """Both conditions hold: enough failures in a row, the first long enough ago."""
        return (
            failures >= self.after_failures
            and first_failure_at is not None
            and now - first_failure_at >= self.after_hours * 3600
        )


def validate(raw: Any) -> dict[str, Any] | bool:
    """The value to store for ``config.auto_disable``; ValueError naming the field."""
    if raw is None or raw is False:
        return OFF
    field = f"config.{KEY}"
    if not isinstance(raw, Mapping):
        raise ValueError(
            f'{field}: must be an object like {{"after_failures": 20, "after_hours": 24}}, '
            "or null to never disable the channel"
        )
    unknown = sorted(set(raw) - set(DEFAULT))
    if unknown:
        raise ValueError(f"{field}.{unknown[0]}: unknown key; use after_failures, after_hours")
    out = dict(DEFAULT)
    count = raw.get("after_failures", DEFAULT["after_failures"])
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
        raise ValueError(f"{field}.after_failures: must be a whole number from 1 to 100000")
    hours = raw.get("after_hours", DEFAULT["after_hours"])
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 <= hours <= 8760:
        raise ValueError(f"{field}.after_hours: must be a number of hours from 0 to 8760")
    out["after_failures"], out["after_hours"] = count, hours
    return out


def of(config: Mapping[str, Any]) -> AutoDisable | None:
    """The thresholds of an effective config (None: never disable)."""
    value = config.get(KEY, DEFAULT)
    if not isinstance(value, Mapping):
        return None
    return AutoDisable(int(value["after_failures"]), float(value["after_hours"]))


def shown(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as the edges show it: "off" as ``null``."""
    if config.get(KEY, True) is OFF:
        return {**config, KEY: None}
    return dict(config)


def disabled_reason(failures: int, first_failure_at: float) -> str:
    since = datetime.fromtimestamp(first_failure_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"disabled after {failures} consecutive failed deliveries since {since}"


def state(*, disabled: bool, consecutive_failures: int) -> str:
    if disabled:
        return DISABLED
    return FAILING if consecutive_failures else HEALTHY


# The colour of a channel's health badge, from its success rate over 24 hours: green from
# GOOD_RATE, amber from FAIR_RATE, red below it. A disabled channel is red; a failing one
# (its last delivery that ended failed) is at most amber, whatever its rate.
GOOD_RATE = 0.95
FAIR_RATE = 0.80
GREEN = "green"
AMBER = "amber"
RED = "red"
GREY = "grey"  # nothing ended in 24 hours, and nothing is wrong


def colour(state: str, success_rate: float | None) -> str:
    """``green``, ``amber``, ``red`` or ``grey`` (no figures) for a channel's badge."""
    if state == DISABLED:
        return RED
    if success_rate is None:
        return AMBER if state == FAILING else GREY
    if success_rate < FAIR_RATE:
        return RED
    if success_rate < GOOD_RATE or state == FAILING:
        return AMBER
    return GREEN
