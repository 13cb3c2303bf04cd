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


def test_idle_destinations_are_let_go(clock: Clock) -> None:
    """After 5,000 destinations used one after another, 10 ms apart, the pacer keeps at
    most PRUNE_AT of them: a bucket that has filled up again is dropped."""
    pacer = Pacer()
    for i in range(5000):
        assert pacer.take(f"d{i}", SLACK) == 0.0
        clock.now += 0.01
    assert len(pacer) <= pacing.PRUNE_AT


def test_letting_go_keeps_what_still_matters(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prune drops refilled buckets and ended holds only: an emptied bucket and a running
    hold stay, and a destination whose hold ended restarts from the hold's end (one
    message, then the rate), not with a full burst."""
    monkeypatch.setattr(pacing, "PRUNE_AT", 12)
    pacer = Pacer()
    for i in range(7):
        pacer.take(f"idle{i}", SLACK)  # 2 tokens of 3 left: full again 1 s later
    for _ in range(3):
        pacer.take("busy", SLACK)  # no token left
    pacer.take("held", SLACK)
    pacer.hold("held", 60)
    pacer.take("ended", SLACK)
    pacer.hold("ended", 1)
    clock.now += 2  # idle buckets are full, busy has 2 tokens, "ended" ended 1 s ago
    pacer.take("new", SLACK)  # 12 destinations kept: this one prunes
    assert len(pacer) == 4  # busy, held, ended, new
    assert [pacer.take("busy", SLACK) for _ in range(2)] == [0.0, 0.0]
    assert pacer.take("busy", SLACK) > 0  # still paced: its bucket was kept
    assert pacer.take("held", SLACK) == pytest.approx(58.0)
    # Restarted at the hold's end: one token, plus one second's refill since.
    assert [pacer.take("ended", SLACK) for _ in range(2)] == [0.0, 0.0]
    assert pacer.take("ended", SLACK) > 0
