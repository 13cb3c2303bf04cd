"""Per-destination pacing: token buckets, and holds from a receiver's Retry-After."""

from __future__ import annotations

import pytest

from loadbell.delivery import pacing
from loadbell.delivery.pacing import Pacer
from loadbell.values import Rate

SLACK = Rate(count=1, per=1.0, burst=3)  # 1 message/s, bursts of 3


class Clock:
    """time.monotonic() that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(pacing.time, "monotonic", fake)
    return fake


def test_bucket_allows_the_burst_then_the_rate(clock: Clock) -> None:
    """Three messages go at once, the fourth waits one second."""
    pacer = Pacer()
    assert [pacer.take("a", SLACK) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pacer.take("a", SLACK) == pytest.approx(1.0)
    clock.now += 1.0
    assert pacer.take("a", SLACK) == 0.0


def test_hold_blocks_only_its_destination(clock: Clock) -> None:
    """A held destination answers the time left, with or without a rate; others go."""
    pacer = Pacer()
    pacer.hold("slack:a", 5.0)
    pacer.hold("webhook:x", 2.0)
    assert pacer.take("slack:a", SLACK) == pytest.approx(5.0)
    assert pacer.take("webhook:x", None) == pytest.approx(2.0)  # unpaced, but held
    assert pacer.take("slack:b", SLACK) == 0.0
    assert pacer.take("webhook:y", None) == 0.0
    clock.now += 3.0
    assert pacer.take("slack:a", SLACK) == pytest.approx(2.0)
    assert pacer.take("webhook:x", None) == 0.0


def test_after_a_hold_one_message_goes_then_the_rate(clock: Clock) -> None:
    """The bucket refilled during the hold, but the destination restarts without a burst."""
    pacer = Pacer()
    assert pacer.take("a", SLACK) == 0.0
    pacer.hold("a", 10.0)
    clock.now += 10.0
    assert pacer.take("a", SLACK) == 0.0
    assert pacer.take("a", SLACK) == pytest.approx(1.0)


def test_a_shorter_hold_never_shortens_a_longer_one(clock: Clock) -> None:
    """Two 429s with different Retry-After: the later end wins."""
    pacer = Pacer()
    pacer.hold("a", 30.0)
    pacer.hold("a", 1.0)
    assert pacer.take("a", SLACK) == pytest.approx(30.0)
    pacer.hold("a", 40.0)
    assert pacer.take("a", SLACK) == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("seconds", "wait"),
    [
        (0.0, 0.0),  # Retry-After: 0 means now
        (-5.0, 0.0),  # nonsense
        (float("nan"), 0.0),  # nonsense
        (12.5, 12.5),  # as given: the retry policy capped it already (decision.py)
    ],
)
def test_hold_bounds(clock: Clock, seconds: float, wait: float) -> None:
    """Holds of 0 or less do nothing; others last as long as asked."""
    pacer = Pacer()
    pacer.hold("a", seconds)
    assert pacer.take("a", None) == pytest.approx(wait)
