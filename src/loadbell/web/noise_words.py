"""The settings every kind takes (``auto_disable`` and noise control), in words for the
project settings page, where they are shown but set through the API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadbell.domain import health, noise

LABELS: tuple[tuple[str, str], ...] = (
    (noise.NOTIFY_ON, "Notify on"),
    (noise.QUIET_HOURS, "Quiet hours"),
    (noise.THROTTLE, "Throttle"),
    (health.KEY, "Auto-disable"),
)


def described(key: str, config: Mapping[str, Any]) -> str:
    """``config[key]`` as people read it; "" when ``config`` does not set it. Off is
    ``null`` as the API shows it, ``false`` as it is stored."""
    if key not in config:
        return ""
    value = config[key]
    if value is None or value is False:
        return "off"
    if not isinstance(value, dict):
        return str(value)
    if key == noise.NOTIFY_ON:
        mode = value.get("mode")
        if mode == noise.RESULT_CHANGE:
            return "when the result changes (the first failure, then the recovery)"
        if mode == noise.CONSECUTIVE_FAILURES:
            return f"after {value.get('count')} failures in a row, then on recovery"
        return "every run"
    if key == noise.QUIET_HOURS:
        days = value.get("days") or noise.DAYS
        when = "every day" if list(days) == list(noise.DAYS) else ", ".join(days)
        action = "held until it ends" if value.get("action") == noise.HOLD else "dropped"
        return (
            f"{value.get('from')}–{value.get('to')} {value.get('timezone')}, {when}: "
            f"messages {action}"
        )
    if key == noise.THROTTLE:
        if not value:
            return "none"
        return ", ".join(
            f"{event}: one per {seconds:g} s per run" for event, seconds in value.items()
        )
    if key == health.KEY:
        return (
            f"after {value.get('after_failures')} failed deliveries in a row over "
            f"{value.get('after_hours'):g} h"
        )
    return ", ".join(f"{k}: {v}" for k, v in value.items())
