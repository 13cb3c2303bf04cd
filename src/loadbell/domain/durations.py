"""Durations as people write them on a command line: ``45s``, ``90m``, ``12h`` or ``30d``.

One number, one unit, nothing else: ``1h30m``, ``1.5h`` and a bare ``30`` are refused, so a
value means one thing. Used by ``loadbell prune --older-than``.
"""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}  # seconds per unit

_DURATION = re.compile(r"(\d+)([smhd])")

# Past this, timedelta overflows; no retention needs more (about 2,700 years).
MAX_DAYS = 999_999


class DurationError(ValueError):
    """A duration that is not a whole number followed by one unit."""


def parse_duration(text: str, *, option: str = "duration") -> timedelta:
    """``"30d"`` -> ``timedelta(days=30)``. ``option`` names the setting in the error."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise DurationError(f"{option}: write a number and a unit: 45s, 90m, 12h or 30d")
    seconds = int(match.group(1)) * UNITS[match.group(2)]
    if seconds > MAX_DAYS * UNITS["d"]:
        raise DurationError(f"{option}: at most {MAX_DAYS}d")
    return timedelta(seconds=seconds)
