"""Pruning by age (services/retention.py over store/retention.py), on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from aged_rows import (
    FINAL_METRICS,
    add_delivery,
    add_event,
    add_report,
    ago,
    count,
    ids,
    make_channel,
    make_run,
)
from loadbell.services.retention import cutoff_for, preview, prune
from loadbell.settings import Settings
from loadbell.store import accounts
from loadbell.store.db import create_engine
from loadbell.store.retention import Pruned, prune_deliveries
from loadbell.store.tables import (
    deliveries,
    delivery_attempts,
    events,
    run_reports,
    run_status_changes,
    runs,
)

WEEK = cutoff_for(timedelta(days=7))


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The test's migrated database, seeded with the default organization and project."""
    eng = create_engine(settings)
    async with eng.begin() as conn:
        await accounts.bootstrap(conn)
    yield eng
    await eng.dispose()


@dataclass
class World:
    run_id: int
    old_done: list[int]  # deliveries finished 40 days ago (succeeded and failed)
    old_event: int  # their event: no delivery left once they go
    recent: int  # a delivery finished yesterday
    recent_event: int
    redelivered: int  # created 40 days ago, redelivered and failed again yesterday
    old_pending: int  # created 40 days ago, still pending (a dead receiver, retrying)
    shared_event: int  # old; has a finished delivery and the pending one
    old_reports: list[int]
    recent_report: int


async def build(engine: AsyncEngine) -> World:
    async with engine.begin() as conn:
        run_id = await make_run(conn)
        channel = await make_channel(conn)
        old_event = await add_event(conn, run_id, ago(40))
        old_done = [
            await add_delivery(conn, old_event, channel, status="succeeded", at=ago(40)),
            await add_delivery(conn, old_event, channel, status="failed", at=ago(40), attempts=3),
        ]
        recent_event = await add_event(conn, run_id, ago(1))
        recent = await add_delivery(conn, recent_event, channel, status="succeeded", at=ago(1))
        redelivered_event = await add_event(conn, run_id, ago(40))
        redelivered = await add_delivery(
            conn, redelivered_event, channel, status="failed", at=ago(40)
        )
        await conn.execute(
            sa.update(deliveries).where(deliveries.c.id == redelivered).values(updated_at=ago(1))
        )
        shared_event = await add_event(conn, run_id, ago(40))
        await add_delivery(conn, shared_event, channel, status="succeeded", at=ago(40))
        old_pending = await add_delivery(
            conn, shared_event, channel, status="pending", at=ago(40), attempts=2
        )
        old_reports = [await add_report(conn, run_id, ago(40)) for _ in range(3)]
        recent_report = await add_report(conn, run_id, ago(1))
    return World(
        run_id,
        old_done,
        old_event,
        recent,
        recent_event,
        redelivered,
        old_pending,
        shared_event,
        old_reports,
        recent_report,
    )


async def test_prunes_old_finished_rows_and_keeps_recent_ones(engine: AsyncEngine) -> None:
    """Finished deliveries last changed before the cutoff go with their attempts, their
    events once no delivery is left and old intermediate reports; newer rows stay."""
    world = await build(engine)
    removed = await prune(engine, WEEK, batch=500)
    assert removed == Pruned(deliveries=3, delivery_attempts=5, events=1, run_reports=3)
    left = await ids(engine, deliveries)
    assert left == {world.recent, world.redelivered, world.old_pending}
    assert await ids(engine, events) == {
        world.recent_event,
        world.shared_event,
        *(await _events_of(engine, world.redelivered)),
    }
    assert await ids(engine, run_reports) == {world.recent_report}
    async with engine.connect() as conn:
        attempts_left = set(
            (await conn.execute(sa.select(delivery_attempts.c.delivery_id))).scalars()
        )
    assert attempts_left == left  # a kept delivery keeps its whole log
    assert await prune(engine, WEEK, batch=500) == Pruned()  # nothing more to do


async def _events_of(engine: AsyncEngine, delivery_id: int) -> set[int]:
    async with engine.connect() as conn:
        q = sa.select(deliveries.c.event_id).where(deliveries.c.id == delivery_id)
        return {int((await conn.execute(q)).scalar_one())}


async def test_never_prunes_a_pending_delivery_nor_its_event(engine: AsyncEngine) -> None:
    """A delivery still pending is kept however old, with its attempts and its event, even
    with a cutoff of now."""
    world = await build(engine)
    await prune(engine, cutoff_for(timedelta(0)), batch=500)
    assert await ids(engine, deliveries) == {world.old_pending}
    assert await ids(engine, events) == {world.shared_event}
    assert await count(engine, delivery_attempts) == 2


async def test_runs_keep_their_final_figures(engine: AsyncEngine) -> None:
    """A pruned run keeps its row, its final metrics and its status history."""
    world = await build(engine)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(run_status_changes).values(run_id=world.run_id, status=3))
    await prune(engine, cutoff_for(timedelta(0)), batch=500)
    async with engine.connect() as conn:
        run = (await conn.execute(sa.select(runs).where(runs.c.id == world.run_id))).one()
    assert run.metrics == FINAL_METRICS and run.status == 3 and run.result == "passed"
    assert await count(engine, run_status_changes) == 1
    assert await count(engine, run_reports) == 0


async def test_works_through_more_rows_than_one_batch(engine: AsyncEngine) -> None:
    """Rows past one batch are pruned too, in windows that each remove at most a batch."""
    async with engine.begin() as conn:
        run_id = await make_run(conn)
        channel = await make_channel(conn)
        for _ in range(23):
            event = await add_event(conn, run_id, ago(40))
            await add_delivery(conn, event, channel, status="succeeded", at=ago(40))
            await add_report(conn, run_id, ago(40))
        keep = await add_event(conn, run_id, ago(1))
        kept = await add_delivery(conn, keep, channel, status="succeeded", at=ago(1))
    async with engine.begin() as conn:
        window = await prune_deliveries(conn, WEEK, 0, 5)
    assert window.removed.deliveries == 5 and window.more
    removed = await prune(engine, WEEK, batch=5, pause=0)
    assert removed == Pruned(deliveries=18, delivery_attempts=18, events=23, run_reports=23)
    assert await ids(engine, deliveries) == {kept}
    assert await ids(engine, events) == {keep}


async def test_dry_run_counts_what_a_prune_removes_and_changes_nothing(
    engine: AsyncEngine,
) -> None:
    """The preview's counts are those the prune then removes, and the preview removes none."""
    await build(engine)
    before = {t.name: await count(engine, t) for t in (deliveries, delivery_attempts, events)}
    expected = await preview(engine, WEEK)
    assert expected.total > 0
    assert {t.name: await count(engine, t) for t in (deliveries, delivery_attempts, events)} == (
        before
    )
    assert await prune(engine, WEEK, batch=2, pause=0) == expected


async def test_concurrent_prunes_remove_each_row_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Two pruners at once (two engines, as two workers) remove everything old between them,
    each row once, without an error."""
    async with engine.begin() as conn:
        run_id = await make_run(conn)
        channel = await make_channel(conn)
        for _ in range(40):
            event = await add_event(conn, run_id, ago(40))
            await add_delivery(conn, event, channel, status="succeeded", at=ago(40), attempts=2)
    other = create_engine(settings)
    try:
        first, second = await asyncio.gather(
            prune(engine, WEEK, batch=3, pause=0), prune(other, WEEK, batch=3, pause=0)
        )
    finally:
        await other.dispose()
    assert first + second == Pruned(deliveries=40, delivery_attempts=80, events=40)
    assert await count(engine, deliveries) == 0 and await count(engine, events) == 0
