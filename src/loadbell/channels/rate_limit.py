"""A channel's own ``config.rate_limit``: its validation and the :class:`Rate` it sets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadbell.values import Rate


def configured_rate(config: Mapping[str, Any]) -> Rate | None:
    """A channel's own ``rate_limit`` config ({"count": 1, "per": 1.0, "burst": 3})."""
    raw = config.get("rate_limit")
    if not isinstance(raw, Mapping):
        return None
    return Rate(count=int(raw["count"]), per=float(raw["per"]), burst=raw.get("burst"))


def validate_rate_limit(raw: Any) -> dict[str, Any] | None:
    """Check a ``config.rate_limit`` value; raise ValueError naming the field."""
    if raw is None:
        return None
    field = "config.rate_limit"
    if not isinstance(raw, Mapping) or not {"count", "per"} <= set(raw):
        raise ValueError(f'{field}: use {{"count": N, "per": seconds}} (optional "burst")')
    count, per, burst = raw["count"], raw["per"], raw.get("burst")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"{field}.count: must be a whole number of messages, at least 1")
    if isinstance(per, bool) or not isinstance(per, (int, float)) or not 0 < per <= 86400:
        raise ValueError(f"{field}.per: must be seconds, more than 0 and at most 86400")
    if burst is not None and (not isinstance(burst, int) or burst < 1):
        raise ValueError(f"{field}.burst: must be a whole number, at least 1")
    return {"count": count, "per": float(per), **({"burst": burst} if burst else {})}
