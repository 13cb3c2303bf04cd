"""The retry policy, a small value object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a delivery gets and how long to wait between them.

    The wait before attempt ``n + 1`` (after ``n`` failed attempts) is::

        delay(n) = min(base_delay * factor ** (n - 1), max_delay)

    Worked example with the defaults (seed 004: 3 retries at 1, 2 and 4 s, capped at 10 s):
    attempt 1 fails -> wait 1 s; attempt 2 fails -> wait 2 s; attempt 3 fails -> wait 4 s;
    attempt 4 fails -> the delivery is ``failed``. With ``max_attempts=6`` the waits go
    1, 2, 4, 8, 10 s. A receiver's ``Retry-After`` replaces the computed wait, but never
    beyond ``max_delay``.
    """

    max_attempts: int = 4
    base_delay: float = 1.0  # seconds
    factor: float = 2.0
    max_delay: float = 10.0  # seconds
    timeout: float = 10.0  # seconds per attempt: connect + response + body

    def delay(self, attempts_made: int, retry_after: float | None = None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_delay)
        return min(self.base_delay * self.factor ** max(attempts_made - 1, 0), self.max_delay)

    def exhausted(self, attempts_made: int) -> bool:
        return attempts_made >= self.max_attempts

    def with_overrides(self, overrides: Mapping[str, Any]) -> RetryPolicy:
        return replace(self, **{k: overrides[k] for k in LIMITS if k in overrides})

    def as_dict(self) -> dict[str, float | int]:
        return {k: getattr(self, k) for k in LIMITS}


# Per-channel overrides are validated against these bounds (inclusive).
LIMITS: dict[str, tuple[float, float]] = {
    "max_attempts": (1, 20),
    "base_delay": (0.0, 3600.0),
    "factor": (1.0, 10.0),
    "max_delay": (0.0, 86400.0),
    "timeout": (0.5, 60.0),
}


def validate_overrides(raw: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in LIMITS:
            raise ValueError(f"retry.{key}: unknown setting; use {', '.join(LIMITS)}")
        lo, hi = LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"retry.{key}: must be a number between {lo:g} and {hi:g}")
        if not lo <= value <= hi:
            raise ValueError(f"retry.{key}: {value} is out of range; use {lo:g} to {hi:g}")
        if key == "max_attempts" and not isinstance(value, int):
            raise ValueError("retry.max_attempts: must be a whole number")
        clean[key] = value
    return clean
