"""Per-destination pacing: a token bucket per destination (webhook URL, Slack target, ...).

A delivery whose destination has no token left is not held in memory: the worker puts it
back with ``next_attempt_at`` moved to when a token will be free, without counting an
attempt. So a slow or rate-limited destination never holds slots that others need.

A receiver's ``Retry-After`` (a 429) holds the whole destination: :meth:`Pacer.hold` makes
every delivery to it wait until then, not only the one that got the answer, and the
destination then starts again with one message rather than a burst.

Buckets live in one worker process. With several workers, each paces on its own; set the
per-channel rate lower (or run one worker) when a destination's limit must hold globally.

What the pacer keeps is bounded by the destinations in use, not by all it has seen: once it
holds :data:`PRUNE_AT` of them, a bucket that has filled up again (the same as a new one)
and a hold that has ended are let go.
"""

from __future__ import annotations

import time

from loadbell.values import Rate

# Destinations (buckets and holds together) kept before the pacer lets go of idle ones.
PRUNE_AT = 1024


class _Bucket:
    __slots__ = ("rate", "tokens", "updated")

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.tokens = rate.capacity
        self.updated = time.monotonic()

    def take(self) -> float:
        """Take a token; return 0, or the seconds until one is free (taking nothing)."""
        now = time.monotonic()
        refill = (now - self.updated) * self.rate.count / self.rate.per
        self.tokens = min(self.rate.capacity, self.tokens + refill)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) * self.rate.per / self.rate.count

    def restart(self, at: float | None = None) -> None:
        """One message may go now (or at ``at``, a ``time.monotonic()``), then the rate
        applies: no burst right after a hold."""
        self.tokens = min(1.0, self.rate.capacity)
        self.updated = time.monotonic() if at is None else at

    def full(self, now: float) -> bool:
        """Refilled to capacity by ``now``: the same as a new bucket."""
        refill = (now - self.updated) * self.rate.count / self.rate.per
        return self.tokens + refill >= self.rate.capacity


class Pacer:
    """Token buckets and holds, per destination key (``kind:destination``)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._holds: dict[str, float] = {}  # destination -> time.monotonic() it opens at
        self._prune_at = PRUNE_AT

    def __len__(self) -> int:
        """Destinations the pacer keeps state for (a bucket, a hold or both)."""
        return len(self._buckets.keys() | self._holds.keys())

    @property
    def holding(self) -> bool:
        """Some destination is held (a Retry-After): unpaced ones must ask :meth:`take`."""
        return bool(self._holds)

    def take(self, destination: str, rate: Rate | None) -> float:
        """0 when a message may go to ``destination`` now (and count it), else the seconds
        to wait. A hold applies whatever the rate, ``None`` (unpaced) included."""
        until = self._holds.get(destination)
        released = False
        if until is not None:
            wait = until - time.monotonic()
            if wait > 0:
                return wait
            del self._holds[destination]
            released = True
        if rate is None:
            return 0.0
        bucket = self._buckets.get(destination)
        if bucket is None or bucket.rate != rate:
            if bucket is None:
                self._grown()
            bucket = self._buckets[destination] = _Bucket(rate)
        if released:
            bucket.restart()
        return bucket.take()

    def hold(self, destination: str, seconds: float) -> None:
        """Block ``destination`` for ``seconds``, e.g. a 429's ``Retry-After`` within the
        retry policy's ``max_delay`` (``decision.py`` caps it): until then :meth:`take`
        answers the time left. A shorter hold never shortens a longer one; 0 or less does
        nothing."""
        if not seconds > 0:  # also refuses NaN
            return
        until = time.monotonic() + seconds
        if destination not in self._holds:
            self._grown()
        if until > self._holds.get(destination, 0.0):
            self._holds[destination] = until

    def _grown(self) -> None:
        """A destination is about to be added: past the threshold, let go of idle ones.
        The threshold then doubles over what is left, so a pacer with many destinations
        in use does not scan them all at every new one."""
        if len(self._buckets) + len(self._holds) < self._prune_at:
            return
        now = time.monotonic()
        for destination, until in list(self._holds.items()):
            if until <= now:
                del self._holds[destination]
                bucket = self._buckets.get(destination)
                if bucket is not None:  # as take() would have: one message, then the rate
                    bucket.restart(at=until)
        for destination, bucket in list(self._buckets.items()):
            if destination not in self._holds and bucket.full(now):
                del self._buckets[destination]
        self._prune_at = max(PRUNE_AT, 2 * (len(self._buckets) + len(self._holds)))
