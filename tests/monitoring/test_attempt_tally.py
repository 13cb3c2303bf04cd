"""The attempt tally scrapes exactly as prometheus-client's own Counter and Histogram would
with the same attempts: the same families, samples, labels and values."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loadbell.monitoring.attempts import (
    DELIVERIES,
    DELIVERIES_HELP,
    DURATION,
    DURATION_HELP,
    RETRIES,
    RETRIES_HELP,
)
from loadbell.monitoring.registry import ATTEMPT_BUCKETS, OUTCOMES, Metrics

PROCESS = "worker-test-1"

# (kind, attempt number, the delivery's new status, seconds): bounds hit exactly (a bound
# is inclusive), past the last bound, and a kind with one attempt only.
ATTEMPTS = [
    ("webhook", 1, "succeeded", 0.003),
    ("webhook", 1, "pending", 0.005),
    ("webhook", 2, "pending", 0.0051),
    ("webhook", 3, "failed", 1.0),
    ("webhook", 1, "succeeded", 45.0),
    ("slack", 2, "succeeded", 0.25),
]


def reference(attempts: list[tuple[str, int, str, float]]) -> bytes:
    """The same figures in prometheus-client's own metrics, as the registry had them."""
    r = CollectorRegistry(auto_describe=True)
    deliveries = Counter(DELIVERIES, DELIVERIES_HELP, ["process", "kind", "outcome"], registry=r)
    retries = Counter(RETRIES, RETRIES_HELP, ["process", "kind"], registry=r)
    duration = Histogram(
        DURATION, DURATION_HELP, ["process", "kind"], buckets=ATTEMPT_BUCKETS, registry=r
    )
    seen: set[str] = set()
    for kind, number, status, seconds in attempts:
        if kind not in seen:  # every outcome of a kind shows from its first attempt
            seen.add(kind)
            for outcome in OUTCOMES.values():
                deliveries.labels(PROCESS, kind, outcome)
            retries.labels(PROCESS, kind)
        deliveries.labels(PROCESS, kind, OUTCOMES[status]).inc()
        if number > 1:
            retries.labels(PROCESS, kind).inc()
        duration.labels(PROCESS, kind).observe(seconds)
    return generate_latest(r)


def without_created_values(text: bytes) -> str:
    """The exposition with each ``_created`` timestamp blanked: they are times of day."""
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", text.decode())


@pytest.mark.parametrize("count", [0, 1, len(ATTEMPTS)])
def test_the_tally_scrapes_as_prometheus_clients_own_metrics(count: int) -> None:
    metrics = Metrics(PROCESS)
    for attempt in ATTEMPTS[:count]:
        metrics.attempt(*attempt)
    ours = generate_latest(metrics.registry)
    theirs = reference(ATTEMPTS[:count])
    # The registry's other families come after these three.
    head = ours[: ours.index(b"# HELP loadbell_claims_total")]
    assert without_created_values(head) == without_created_values(theirs)


def test_the_tally_counts_what_it_is_given() -> None:
    """Read back through the parser: outcomes, retries, buckets (cumulative) and the sum."""
    metrics = Metrics(PROCESS)
    for attempt in ATTEMPTS:
        metrics.attempt(*attempt)
    samples = {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "process"))): s.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for s in family.samples
    }
    web = (("kind", "webhook"),)
    assert samples[(f"{DELIVERIES}_total", (*web, ("outcome", "delivered")))] == 2
    assert samples[(f"{DELIVERIES}_total", (*web, ("outcome", "retry")))] == 2
    assert samples[(f"{DELIVERIES}_total", (*web, ("outcome", "failed")))] == 1
    assert samples[(f"{RETRIES}_total", web)] == 2
    assert samples[(f"{DURATION}_bucket", (*web, ("le", "0.005")))] == 2
    assert samples[(f"{DURATION}_bucket", (*web, ("le", "0.01")))] == 3
    assert samples[(f"{DURATION}_bucket", (*web, ("le", "1.0")))] == 4
    assert samples[(f"{DURATION}_bucket", (*web, ("le", "30.0")))] == 4
    assert samples[(f"{DURATION}_bucket", (*web, ("le", "+Inf")))] == 5
    assert samples[(f"{DURATION}_count", web)] == 5
    assert samples[(f"{DURATION}_sum", web)] == pytest.approx(0.003 + 0.005 + 0.0051 + 1 + 45)
    assert samples[(f"{DELIVERIES}_created", (*web, ("outcome", "failed")))] > 0
