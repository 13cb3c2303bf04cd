"""A channel whose endpoint answers fast runs more attempts at once than one that does not
(delivery/holds.py, D76), against a real receiver and a real database."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from aiohttp import web
from bench.backlog import stage_backlog

from conftest import seed
from loadbell.delivery.holds import FAST_SECONDS
from loadbell.delivery.wakeup import Wakeup
from loadbell.delivery.worker import Worker
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.queue import queue_for
from loadbell.store.tables import deliveries
from loadbell.testing import RecordingReceiver
from loadbell.testing.receiver import Received

PER_CHANNEL = 2
FAST = 5


class InFlight:
    """A receiver's handler that answers after ``delay`` seconds and notes the most
    requests it was answering at once."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.now = 0
        self.most = 0

    async def __call__(self, _: Received) -> web.Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.now -= 1
        return web.Response(status=204)


async def _drain(settings: Settings, handler: InFlight, n: int, *, ordered: bool = True) -> None:
    """Stage ``n`` deliveries to one channel (as runs that started and finished, or with no
    order among them), then let a worker deliver them all."""
    await seed(settings)
    settings = settings.model_copy(
        update={
            "worker_concurrency": 16,
            "per_channel_concurrency": PER_CHANNEL,
            "fast_channel_concurrency": FAST,
        }
    )
    box = SecretBox.from_settings(settings.secret_key, settings.secret_key_file)
    engine = create_engine(settings)
    stop = asyncio.Event()
    running: asyncio.Task[None] | None = None
    try:
        async with RecordingReceiver(handler=handler) as rx:
            await stage_backlog(engine, box, f"{rx.url}/h", n, settings.base_url)
            if not ordered:
                async with engine.begin() as conn:
                    await conn.execute(sa.update(deliveries).values(order_key=None))
            worker = Worker(queue_for(settings), box, settings, Wakeup())
            running = asyncio.create_task(worker.run(stop))
            await rx.wait_for(n, timeout=60)
            stop.set()
            await running
    finally:
        stop.set()
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)
        await engine.dispose()


async def test_a_channel_that_answers_fast_runs_up_to_its_fast_cap(settings: Settings) -> None:
    """Answers in 20 ms: once the first ones are in, the channel runs more than its
    per-channel cap at once, and never more than its fast cap."""
    handler = InFlight(0.02)
    await _drain(settings, handler, 60)
    assert PER_CHANNEL < handler.most <= FAST, handler.most


async def test_the_attempt_that_raises_the_cap_starts_more(settings: Settings) -> None:
    """Eight deliveries with no order among them: the worker's first claim takes them all
    (a channel it holds none of gets a hold of 4 x 2), so no later claim starts anything.
    The attempt whose answer made the channel fast starts the ones waiting."""
    handler = InFlight(0.02)
    await _drain(settings, handler, 8, ordered=False)
    assert PER_CHANNEL < handler.most <= FAST, handler.most


async def test_a_channel_that_answers_slowly_keeps_its_cap(settings: Settings) -> None:
    """Answers slower than FAST_SECONDS: never more than the per-channel cap at once (a
    slower machine only makes the answers slower)."""
    handler = InFlight(FAST_SECONDS + 0.05)
    await _drain(settings, handler, 6)
    assert handler.most == PER_CHANNEL


def test_the_fast_cap_defaults_to_four_times_the_channel_cap_within_half_the_worker() -> None:
    """Unset: 4 x the per-channel cap, at most half the worker's slots, never below the
    per-channel cap; set: as given, never below the per-channel cap."""

    def cap(**values: object) -> int:
        return Settings(database_url="sqlite+aiosqlite:///unused.db", **values).fast_channel_cap  # type: ignore[arg-type]

    assert cap() == 64  # 16 x 4, half of 128
    assert cap(per_channel_concurrency=4) == 16
    assert cap(worker_concurrency=40) == 20
    assert cap(worker_concurrency=8) == 16  # half of 8 is below the per-channel cap
    assert cap(fast_channel_concurrency=100) == 100
    assert cap(fast_channel_concurrency=3) == 16  # at or below the channel cap: off
