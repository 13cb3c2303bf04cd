"""Per-event subscription filters (seed 000: "manual"/"scheduled" starts, chosen result statuses).

A filter is a small dict of lists. An omitted list means "any"; every given list must match
(AND). Filters are validated when a channel is saved, so matching never sees bad input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loadbell.domain import k6cloud
from loadbell.domain.events import EventType
from loadbell.domain.statuses import TERMINAL_STATUSES, RunResult, RunStatus, Trigger

# event -> the filter keys it accepts
FILTER_KEYS: dict[EventType, frozenset[str]] = {
    EventType.TEST_STARTING: frozenset({"triggers"}),
    # k6cloud_events: Grafana Cloud k6's identifiers of this event (domain/k6cloud.py)
    EventType.TEST_STARTED: frozenset({"triggers", "k6cloud_events"}),
    EventType.TEST_FINISHED: frozenset({"triggers", "statuses", "results", "k6cloud_events"}),
    EventType.TEST_REGRESSED: frozenset({"triggers", "statuses", "results"}),
}


@dataclass(frozen=True)
class RunFacts:
    """What a filter can look at: the run as it was when the event happened."""

    trigger: str | None
    status: int | None
    result: str | None


def validate_filters(raw: Mapping[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """Check and normalise a ``filters`` document; raise ValueError naming the bad field."""
    clean: dict[str, dict[str, list[Any]]] = {}
    for event_name, spec in raw.items():
        field = f"filters.{event_name}"
        try:
            event = EventType(event_name)
        except ValueError:
            raise ValueError(f"{field}: unknown event '{event_name}'") from None
        allowed = FILTER_KEYS.get(event)
        if allowed is None:
            raise ValueError(
                f"{field}: event '{event_name}' takes no filters; "
                f"filters exist for {', '.join(sorted(e.value for e in FILTER_KEYS))}"
            )
        if not isinstance(spec, Mapping):
            raise ValueError(f'{field}: must be an object such as {{"triggers": ["manual"]}}')
        out: dict[str, list[Any]] = {}
        for key, values in spec.items():
            if key not in allowed:
                raise ValueError(
                    f"{field}.{key}: unknown filter; '{event_name}' accepts "
                    f"{', '.join(sorted(allowed))}"
                )
            if not isinstance(values, list):
                raise ValueError(f"{field}.{key}: must be a list")
            if not values:
                # An empty list would silently match nothing: the channel would never notify.
                raise ValueError(
                    f"{field}.{key}: an empty list matches nothing; leave '{key}' out to mean any"
                )
            out[key] = _check_values(f"{field}.{key}", key, values, event)
        clean[event.value] = out
    return clean


def _check_values(field: str, key: str, values: list[Any], event: EventType) -> list[Any]:
    if key == "k6cloud_events":
        ours = k6cloud.of_event(event)
        for v in values:
            if v not in ours:
                raise ValueError(
                    f"{field}: {v!r} is not a Grafana Cloud k6 identifier of '{event.value}'; "
                    f"use {', '.join(ours)}"
                )
        return [name for name in ours if name in values]  # Grafana's order, once each
    if key == "triggers":
        good = {t.value for t in Trigger}
        for v in values:
            if v not in good:
                raise ValueError(f"{field}: '{v}' is not a trigger; use 'manual' or 'scheduled'")
        return list(dict.fromkeys(values))
    if key == "results":
        good = {r.value for r in RunResult}
        for v in values:
            if v not in good:
                raise ValueError(f"{field}: '{v}' is not a result; use 'passed' or 'failed'")
        return list(dict.fromkeys(values))
    # statuses
    terminal = sorted(int(s) for s in TERMINAL_STATUSES)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v not in terminal:
            raise ValueError(f"{field}: {v!r} is not a finishing status; use codes from {terminal}")
    return sorted(set(values))


def matches(
    event: EventType, filters: Mapping[str, Mapping[str, list[Any]]], run: RunFacts
) -> bool:
    """True when the event passes the channel's filter for it (no filter: always true)."""
    spec = filters.get(event.value)
    if not spec:
        return True
    triggers = spec.get("triggers")
    if triggers is not None and run.trigger not in triggers:
        return False
    statuses = spec.get("statuses")
    if statuses is not None and run.status not in statuses:
        return False
    results = spec.get("results")
    if results is not None and run.result not in results:
        return False
    chosen = spec.get("k6cloud_events")
    return chosen is None or k6cloud.selected(chosen, event, run.trigger, run.status, run.result)


__all__ = ["FILTER_KEYS", "RunFacts", "RunStatus", "matches", "validate_filters"]
