"""Which claimed delivery a worker attempts next: per-channel slots, without a database."""

from __future__ import annotations

from datetime import UTC, datetime

from loadbell.delivery.holds import MIN_HOLD, Holds
from loadbell.delivery.slots import Slots
from loadbell.store.queue import Claimed

NOW = 1_000_000.0


def _item(delivery_id: int, channel_id: int, lease_left: float = 30.0) -> Claimed:
    return Claimed(
        id=delivery_id,
        uuid=f"u{delivery_id}",
        channel_id=channel_id,
        target=None,
        order_key=None,
        attempts=0,
        series=1,
        event_id=1,
        event_type="test.started",
        occurred_at=datetime.now(UTC),
        project_id=1,
        context={},
        lease_until=NOW + lease_left,
    )


def _slots(per_channel: int = 2, stale: list[int] | None = None, fast: int | None = None) -> Slots:
    return Slots(
        Holds(per_channel, fast),
        min_lease=24.0,
        on_stale=lambda item: (stale if stale is not None else []).append(item.id),
    )


def test_a_channel_gets_at_most_its_slots() -> None:
    """A channel runs at most ``per_channel`` attempts; the rest wait for a slot."""
    slots = _slots(per_channel=2)
    for i in range(5):
        slots.add(_item(i, channel_id=7), None)
    started = [slots.next(NOW) for _ in range(3)]
    assert [job[0].id for job in started if job] == [0, 1]
    assert started[2] is None
    assert (slots.running, slots.held(7)) == (2, 5)
    slots.done(7)
    job = slots.next(NOW)
    assert job is not None and job[0].id == 2


def test_channels_take_turns() -> None:
    """Channels with work and a free slot take turns, so a big backlog does not starve
    another channel."""
    slots = _slots(per_channel=10)
    for i in range(6):
        slots.add(_item(i, channel_id=1), None)
    slots.add(_item(100, channel_id=2), None)
    order = []
    while (job := slots.next(NOW)) is not None:
        order.append(job[0].channel_id)
    assert order[:3] == [1, 2, 1]
    assert sorted(order) == [1] * 6 + [2]


def test_a_delivery_whose_lease_runs_short_is_handed_back() -> None:
    """One that waited until less than the longest attempt is left of its lease is not
    started: another worker could take it over mid-attempt."""
    stale: list[int] = []
    slots = _slots(stale=stale)
    slots.add(_item(1, channel_id=1, lease_left=5.0), None)
    slots.add(_item(2, channel_id=1), None)
    job = slots.next(NOW)
    assert job is not None and job[0].id == 2
    assert stale == [1]


def test_queued_work_can_be_taken_back() -> None:
    """What was claimed but not started can be taken out (to hand it back); what runs
    stays."""
    slots = _slots(per_channel=1)
    for i in range(3):
        slots.add(_item(i, channel_id=1), None)
    assert slots.next(NOW) is not None
    assert sorted(item.id for item in slots.take_queued()) == [1, 2]
    assert (slots.held(1), slots.running, slots.next(NOW)) == (1, 1, None)


def test_room_and_half_empty_follow_the_holds() -> None:
    """A claim may take a channel's hold minus what is held; a channel is claimed again once
    half its hold is left."""
    slots = _slots(per_channel=2)
    hold = slots.holds.of(1)
    for i in range(hold):
        slots.add(_item(i, channel_id=1), None)
    assert slots.room() == {1: 0}
    assert not slots.half_empty(1)
    for _ in range(hold - hold // 2):
        job = slots.next(NOW)
        assert job is not None
        slots.done(1)
    assert slots.half_empty(1)
    assert slots.startable() == 2


def test_a_disabled_channel_queued_work_is_dropped() -> None:
    """Dropping a channel (disabled for failing) forgets what is queued of it, unsent;
    what runs finishes, and other channels keep their turns."""
    slots = _slots(per_channel=1)
    for i in range(3):
        slots.add(_item(i, channel_id=1), None)
    slots.add(_item(10, channel_id=2), None)
    first = slots.next(NOW)
    assert first is not None and first[0].id == 0
    assert slots.drop(1) == 2
    assert slots.drop(1) == 0
    job = slots.next(NOW)
    assert job is not None and job[0].id == 10
    assert slots.next(NOW) is None
    assert (slots.held(1), slots.running) == (1, 2)


def test_a_channel_that_answers_fast_may_run_more_at_once() -> None:
    """Once a channel's attempts take less than FAST_SECONDS on average, it runs up to its
    fast cap; when they slow down, no attempt past the cap starts until enough end."""
    slots = _slots(per_channel=2, fast=5)
    for i in range(20):
        slots.add(_item(i, channel_id=3), None)
    assert [slots.next(NOW) is not None for _ in range(3)] == [True, True, False]
    assert slots.startable() == 0
    assert slots.holds.took(3, 0.01) is True  # its cap rose: wake lanes for it
    slots.done(3)
    assert slots.startable() == 4
    assert [slots.next(NOW) is not None for _ in range(5)] == [True] * 4 + [False]
    assert slots.running == 5
    assert slots.holds.took(3, 0.01) is False  # fast already
    # An endpoint that starts to hang: its first slow attempt brings the cap back to 2.
    assert slots.holds.took(3, 10.0) is False
    assert slots.holds.cap(3) == 2
    slots.done(3)
    assert (slots.running, slots.startable(), slots.next(NOW)) == (4, 0, None)
    for _ in range(3):
        slots.done(3)
    assert slots.running == 1 and slots.startable() == 1


def test_without_a_fast_cap_a_fast_channel_keeps_its_slots() -> None:
    """No fast cap (or one not above the channel cap): the pace moves only the hold."""
    for fast in (None, 2, 1):
        slots = _slots(per_channel=2, fast=fast)
        assert slots.holds.took(3, 0.001) is False
        assert slots.holds.cap(3) == 2


def test_a_fast_channel_holds_enough_to_fill_its_slots() -> None:
    """The hold of a fast channel is at least MIN_HOLD times its fast cap."""
    holds = Holds(2, 40)
    holds.took(3, 0.2)  # fast, but slow enough that its pace alone would hold little
    assert holds.cap(3) == 40
    assert holds.of(3) >= MIN_HOLD * 40
