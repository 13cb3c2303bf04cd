"""Attempt deadlines from one timer (delivery/deadlines.py): each ends its block with
TimeoutError at its own deadline, as asyncio.timeout would, whatever else is under way."""

from __future__ import annotations

import asyncio
import time

import pytest

from loadbell.delivery.deadlines import Deadlines


async def _hang(deadlines: Deadlines, seconds: float) -> float:
    """Wait for nothing within ``seconds``; returns how long until TimeoutError came."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        with deadlines.within(seconds, asyncio.get_running_loop()):
            await asyncio.Event().wait()
    return time.monotonic() - started


async def test_a_block_past_its_deadline_ends_with_timeout_error() -> None:
    deadlines = Deadlines()
    took = await _hang(deadlines, 0.2)
    assert took >= 0.2
    assert took < 30, "the deadline never fired"


async def test_a_block_that_finishes_in_time_is_left_alone() -> None:
    """A block done before its deadline returns its result, and the task is not cancelled
    later, when the deadline it had would have come."""
    deadlines = Deadlines()
    with deadlines.within(0.1, asyncio.get_running_loop()) as deadline:
        await asyncio.sleep(0)
    assert not deadline.expired
    await asyncio.sleep(0.3)  # past the deadline: no CancelledError here
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_shorter_deadline_noted_after_a_longer_one_fires_first() -> None:
    """The timer is set for the earliest deadline: one of 0.2 s noted while one of 60 s is
    under way still ends at 0.2 s, and the 60 s one keeps running."""
    deadlines = Deadlines()
    long_one = asyncio.create_task(_hang(deadlines, 60))
    await asyncio.sleep(0.05)
    took = await _hang(deadlines, 0.2)
    assert 0.2 <= took < 30
    assert not long_one.done()
    long_one.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long_one


async def test_many_blocks_each_end_at_their_own_deadline() -> None:
    """Fifty blocks with deadlines spread over 0.1-0.6 s each get TimeoutError no earlier
    than its own deadline; those that finish in time are untouched."""
    deadlines = Deadlines()

    async def quick() -> str:
        with deadlines.within(30, asyncio.get_running_loop()):
            await asyncio.sleep(0.01)
        return "done"

    seconds = [0.1 + (i % 6) / 10 for i in range(50)]
    hung = [asyncio.create_task(_hang(deadlines, s)) for s in seconds]
    quick_ones = [asyncio.create_task(quick()) for _ in range(20)]
    took = await asyncio.gather(*hung)
    assert all(t >= s for t, s in zip(took, seconds, strict=True))
    assert await asyncio.gather(*quick_ones) == ["done"] * 20


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    """The worker stopping cancels an attempt: that is CancelledError, not a timeout."""
    deadlines = Deadlines()
    entered = asyncio.Event()

    async def attempt() -> None:
        with deadlines.within(30, asyncio.get_running_loop()):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(attempt())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_during_an_expired_block_is_kept() -> None:
    """When the deadline and a cancellation from elsewhere both hit a block, the
    cancellation wins, as with asyncio.timeout: the task must still stop."""
    deadlines = Deadlines()

    async def attempt() -> None:
        with deadlines.within(0.05, asyncio.get_running_loop()):
            try:
                await asyncio.Event().wait()
            finally:
                # Cancelled by the deadline; the worker's stop comes while cleaning up.
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await asyncio.sleep(0)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(attempt())


def test_deadlines_used_on_a_new_loop_still_fire() -> None:
    """A timer set on a loop that has since ended would never fire: a deadline noted on a
    new loop gets a timer of that loop, even when it is later than the old timer's."""
    deadlines = Deadlines()

    async def note_and_leave() -> None:
        with deadlines.within(0.5, asyncio.get_running_loop()):
            await asyncio.sleep(0)

    async def hang_on_a_new_loop() -> float:
        task = asyncio.create_task(_hang(deadlines, 1.0))
        done, _ = await asyncio.wait([task], timeout=30)
        if not done:
            task.cancel()
        assert done, "the deadline never fired"
        return task.result()

    asyncio.run(note_and_leave())  # its loop ends with a timer set for 0.5 s from then
    took = asyncio.run(hang_on_a_new_loop())
    assert took >= 1.0


async def test_a_deadline_of_another_loop_is_refused() -> None:
    """A deadline is entered in a task of the loop it was given; given another loop (one
    that has ended), it says so rather than keep a timer that would never fire."""
    other = asyncio.new_event_loop()
    other.close()
    with pytest.raises(RuntimeError, match="in a task of its loop"):
        with Deadlines().within(30, other):
            pass
