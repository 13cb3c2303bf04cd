"""The worker's figures per attempt, kept as plain numbers and read by the registry at
scrape time.

A worker makes thousands of attempts a second. prometheus-client's ``Counter.inc`` and
``Histogram.observe`` each take a lock and check their metric on every call: the three an
attempt needs cost it 1.4 µs of CPU, where adding to a few numbers costs 0.3 µs
(docs/decisions.md, D79). Every attempt runs on the worker's event loop, so nothing else
writes these numbers; a scrape reads them on that loop too, or from another thread under
the GIL, and sees each number whole.

:class:`AttemptTally` is a collector (prometheus-client's public ``Collector``): at each
scrape it builds the same three families, with the same samples, that a ``Counter``,
another ``Counter`` and a ``Histogram`` with these names would give, ``_created`` series
included (``tests/monitoring/test_attempt_tally.py`` holds it to them).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

DELIVERIES = "loadbell_deliveries"
DELIVERIES_HELP = (
    "Delivery attempts by what they came to: delivered, retry (another attempt is "
    "scheduled) or failed (for good), and channel kind."
)
RETRIES = "loadbell_delivery_retries"
RETRIES_HELP = "Attempts that were retries (attempt number 2 or more), by channel kind."
DURATION = "loadbell_attempt_duration_seconds"
DURATION_HELP = "How long one delivery attempt took (send and response), by channel kind."


class _Kind:
    """One channel kind's numbers."""

    __slots__ = ("buckets", "created", "outcomes", "retries", "seconds")

    def __init__(self, statuses: tuple[str, ...], bounds: int) -> None:
        self.outcomes = dict.fromkeys(statuses, 0)
        self.retries = 0
        self.buckets = [0] * (bounds + 1)  # attempts per bucket, the last one past every bound
        self.seconds = 0.0
        self.created = time.time()


class AttemptTally(Collector):
    """Attempts per channel kind: by what they came to, the retries among them, and how
    long they took."""

    def __init__(self, process: str, outcomes: dict[str, str], bounds: tuple[float, ...]) -> None:
        self.process = process
        self._outcomes = outcomes  # the delivery's new status -> the ``outcome`` label
        self._statuses = tuple(outcomes)
        self._bounds = bounds
        self._kinds: dict[str, _Kind] = {}

    def add(self, kind: str, number: int, status: str, seconds: float) -> None:
        """An attempt (number 1 for the first) ended and left its delivery in ``status``."""
        tally = self._kinds.get(kind)
        if tally is None:
            tally = self._kinds[kind] = _Kind(self._statuses, len(self._bounds))
        tally.outcomes[status] += 1
        if number > 1:
            tally.retries += 1
        # A bucket's bound is inclusive (le), as the histogram's own: bisect_left.
        tally.buckets[bisect.bisect_left(self._bounds, seconds)] += 1
        tally.seconds += seconds

    def describe(self) -> Iterator[Metric]:
        return self._families({})

    def collect(self) -> Iterator[Metric]:
        return self._families(dict(self._kinds))

    def _families(self, kinds: dict[str, _Kind]) -> Iterator[Metric]:
        p = self.process
        deliveries = CounterMetricFamily(
            DELIVERIES, DELIVERIES_HELP, labels=("process", "kind", "outcome")
        )
        retries = CounterMetricFamily(RETRIES, RETRIES_HELP, labels=("process", "kind"))
        duration = HistogramMetricFamily(DURATION, DURATION_HELP, labels=("process", "kind"))
        for kind, tally in kinds.items():
            for status, count in tally.outcomes.items():
                outcome = self._outcomes[status]
                deliveries.add_metric((p, kind, outcome), count, created=tally.created)
            retries.add_metric((p, kind), tally.retries, created=tally.created)
            total, buckets = 0, []
            for bound, count in zip((*self._bounds, float("inf")), tally.buckets, strict=True):
                total += count
                buckets.append((_le(bound), total))
            duration.add_metric((p, kind), buckets, tally.seconds)
            labels = {"process": p, "kind": kind}
            duration.add_sample(f"{DURATION}_created", labels, tally.created)
        yield deliveries
        yield retries
        yield duration


def _le(bound: float) -> str:
    """A bucket's ``le`` label as Prometheus writes it: ``0.005``, ``1.0``, ``+Inf``."""
    return "+Inf" if bound == float("inf") else repr(float(bound))
