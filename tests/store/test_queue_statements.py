"""What a claim and a result write guarantee, now that each is one statement on PostgreSQL:
the per-channel room, the channel and override rows, NOTIFY, and the rare paths of a write
(an attempt row that exists already, a result fenced out). The room and the rows are held on
both databases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from bench.backlog import stage_backlog

from conftest import seed
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store import tables
from loadbell.store.db import create_engine
from loadbell.store.outbox import NOTIFY_CHANNEL
from loadbell.store.queue import (
    HOUR,
    KEEP_HOURS,
    WorkQueue,
    postgres,
    queue_for,
)
from store.queue_support import done as _done
from store.queue_support import rows as _rows

URL = "http://127.0.0.1:9/hook"  # never contacted: these tests only claim and record


@dataclass
class Staged:
    queue: WorkQueue
    settings: Settings
    channels: list[int]  # in the order stage_backlog made them


@pytest.fixture
async def staged(settings: Settings) -> AsyncIterator[Staged]:
    """12 deliveries (6 runs, each an ordered pair) over 3 organization channels, run i on
    channel i % 3: the 6 first deliveries are claimable, 2 of each channel."""
    await seed(settings)
    box = SecretBox.from_settings(settings.secret_key, settings.secret_key_file)
    engine = create_engine(settings)
    try:
        await stage_backlog(engine, box, URL, 12, settings.base_url, channel_count=3)
        async with engine.connect() as conn:
            ids = (await conn.execute(sa.select(tables.channels.c.id))).scalars().all()
    finally:
        await engine.dispose()
    queue = queue_for(settings)
    await queue.open()
    yield Staged(queue, settings, sorted(ids))
    await queue.close()


async def _execute(settings: Settings, *statements: Any) -> list[Any]:
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            return [await conn.execute(s) for s in statements]
    finally:
        await engine.dispose()


async def test_a_claim_leases_the_oldest_rows_each_channel_has_room_for(staged: Staged) -> None:
    """Each channel gets at most its room (given, or the cap), its oldest due rows first;
    the rows left are not leased and can be claimed at once by another claim."""
    a, b, c = staged.channels
    queue = staged.queue
    due = await _rows(
        staged.settings,
        sa.select(tables.deliveries.c.id, tables.deliveries.c.channel_id)
        .where(tables.deliveries.c.event_type == "test.started")
        .order_by(tables.deliveries.c.next_attempt_at),
    )
    batch = await queue.claim(
        owner="w1", limit=100, lease_seconds=30, channel_cap=2, channel_room={a: 1, b: 0}
    )
    oldest_of_a = next(r.id for r in due if r.channel_id == a)
    of_c = [r.id for r in due if r.channel_id == c]
    assert [d.id for d in batch.deliveries] == sorted([oldest_of_a, *of_c])
    assert batch.left and not batch.full
    assert set(batch.channels) == {a, c}
    leased = await _rows(
        staged.settings,
        sa.select(tables.deliveries.c.id).where(tables.deliveries.c.lease_owner == "w1"),
    )
    assert sorted(r.id for r in leased) == sorted(d.id for d in batch.deliveries)
    rest = await queue.claim(owner="w2", limit=100, lease_seconds=30)
    assert sorted(d.id for d in rest.deliveries) == sorted(
        r.id for r in due if r.id not in {d.id for d in batch.deliveries}
    )
    assert not rest.left and not rest.full


async def test_a_claim_that_takes_its_limit_is_full(staged: Staged) -> None:
    """A claim whose limit is reached with every candidate kept says more may be due; one
    that finds fewer than its limit does not."""
    first = await staged.queue.claim(owner="w", limit=4, lease_seconds=30)
    assert len(first.deliveries) == 4 and first.full and not first.left
    second = await staged.queue.claim(owner="w", limit=4, lease_seconds=30)
    assert len(second.deliveries) == 2 and not second.full and not second.left
    assert (await staged.queue.claim(owner="w", limit=4, lease_seconds=30)).deliveries == []


async def test_a_claim_reads_the_overrides_its_projects_see(staged: Staged) -> None:
    """A claim returns each claimed channel's row once, and the override of the event's
    project for an organization channel; a project's own channel has none, even with an
    override row."""
    a, b, _ = staged.channels
    await _execute(
        staged.settings,
        sa.update(tables.channels).where(tables.channels.c.id == b).values(project_id=1),
    )
    await _execute(
        staged.settings,
        sa.insert(tables.channel_overrides).values(
            [
                {"channel_id": a, "project_id": 1, "enabled": False, "config": {"x": 1}},
                {"channel_id": b, "project_id": 1, "enabled": True, "config": {"y": 2}},
            ]
        ),
    )
    batch = await staged.queue.claim(owner="w", limit=100, lease_seconds=30)
    assert len(batch.deliveries) == 6
    assert sorted(batch.channels) == sorted(staged.channels)
    assert batch.channels[b]["project_id"] == 1 and batch.channels[a]["project_id"] is None
    assert batch.overrides == {(a, 1): {"enabled": False, "config": {"x": 1}, "secrets": None}}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_claims_and_writes_notify_other_workers(staged: Staged) -> None:
    """A claim that leases rows and leaves due rows it locked, and a write after which a
    follower may go, each send NOTIFY (at their commit); a claim that keeps every row it
    found, or leases none, does not."""
    assert isinstance(staged.queue, postgres.PostgresQueue)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(staged.queue.dsn)
    # The callback's arguments: connection, server pid, channel, payload.
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: heard.put_nowait(args[3]))
    try:
        # Leases nothing (no channel has room): no NOTIFY, the sentinel is heard first.
        none = await staged.queue.claim(
            owner="w", limit=100, lease_seconds=30, channel_room=dict.fromkeys(staged.channels, 0)
        )
        assert none.deliveries == [] and none.left
        await listener.execute(f"NOTIFY {NOTIFY_CHANNEL}, 'first'")
        assert await asyncio.wait_for(heard.get(), 10) == "first"

        batch = await staged.queue.claim(owner="w", limit=100, lease_seconds=30, channel_cap=1)
        assert len(batch.deliveries) == 3 and batch.left
        await asyncio.wait_for(heard.get(), 10)

        # Keeps all it finds: no NOTIFY. A sentinel sent after it is the next one heard.
        rest = await staged.queue.claim(owner="w", limit=100, lease_seconds=30)
        assert len(rest.deliveries) == 3 and not rest.left
        await listener.execute(f"NOTIFY {NOTIFY_CHANNEL}, 'sentinel'")
        assert await asyncio.wait_for(heard.get(), 10) == "sentinel"

        recorded = await staged.queue.record([_done(batch.deliveries[0])], [], "w")
        assert recorded.followers
        assert await asyncio.wait_for(heard.get(), 10) == ""
    finally:
        await listener.close()


async def test_an_attempt_row_that_exists_makes_the_write_one_transaction(
    staged: Staged,
) -> None:
    """When one attempt row of a batch exists already (another worker made that attempt),
    the write still applies once: the row is the one whose claim holds, every delivery
    ends, and health and hourly counts count each result once."""
    batch = (await staged.queue.claim(owner="w", limit=2, lease_seconds=30)).deliveries
    first, second = batch
    await _execute(
        staged.settings,
        sa.insert(tables.delivery_attempts).values(
            delivery_id=first.id,
            series=first.series,
            number=1,
            started_at=datetime.now(UTC),
            duration_ms=1.0,
            outcome="retry",
            request_url=URL,
            request_headers={},
            worker="other",
        ),
    )
    recorded = await staged.queue.record([_done(first), _done(second)], [], "w")
    assert recorded.followers
    attempts = await _rows(staged.settings, sa.select(tables.delivery_attempts))
    assert sorted((r.delivery_id, r.worker, r.outcome) for r in attempts) == sorted(
        [(first.id, "w", "delivered"), (second.id, "w", "delivered")]
    )
    rows = await _rows(staged.settings, sa.select(tables.deliveries))
    states = {r.id: (r.status, r.attempts, r.lease_owner) for r in rows}
    assert states[first.id] == states[second.id] == ("succeeded", 1, None)
    hours = await _rows(staged.settings, sa.select(tables.channel_health_hours))
    assert sum(h.succeeded for h in hours) == 2 and sum(h.failed for h in hours) == 0


async def test_a_fenced_out_result_is_only_logged(staged: Staged) -> None:
    """A result written after its claim's lease was taken over adds its attempt row and
    changes nothing of the delivery; when the new claim's result has that attempt's row
    already, the row stays the new claim's."""
    [item] = (await staged.queue.claim(owner="dead", limit=1, lease_seconds=30)).deliveries
    again = await staged.queue.claim(owner="alive", limit=1, lease_seconds=30, dead_owners=["dead"])
    [taken] = again.deliveries
    assert taken.id == item.id and again.taken_over == 1

    # The stale result first: logged, not applied.
    await staged.queue.record([_done(item, "pending")], [], "dead")
    [row] = await _rows(
        staged.settings, sa.select(tables.deliveries).where(tables.deliveries.c.id == item.id)
    )
    assert (row.status, row.attempts, row.lease_owner) == ("pending", 0, "alive")
    [attempt] = await _rows(staged.settings, sa.select(tables.delivery_attempts))
    assert (attempt.worker, attempt.outcome) == ("dead", "retry")

    # The live claim's result of the same attempt replaces the row and applies.
    await staged.queue.record([_done(taken)], [], "alive")
    [attempt] = await _rows(staged.settings, sa.select(tables.delivery_attempts))
    assert (attempt.worker, attempt.outcome) == ("alive", "delivered")

    # And the stale one written once more changes neither.
    await staged.queue.record([_done(item, "pending")], [], "dead")
    [attempt] = await _rows(staged.settings, sa.select(tables.delivery_attempts))
    assert (attempt.worker, attempt.outcome) == ("alive", "delivered")
    [row] = await _rows(
        staged.settings, sa.select(tables.deliveries).where(tables.deliveries.c.id == item.id)
    )
    assert (row.status, row.attempts, row.lease_owner) == ("succeeded", 1, None)


async def test_hourly_counts_older_than_kept_are_removed(staged: Staged) -> None:
    """A worker's first write of an hour removes hourly counts older than KEEP_HOURS and
    adds its own."""
    # The write's hour must be the one the rows below are placed against: close to the end
    # of an hour, wait for the next one (at most 5 s) rather than race the turn.
    left = HOUR - time.time() % HOUR
    if left < 5:
        await asyncio.sleep(left + 0.1)
    now_hour = int(time.time() // HOUR)
    a = staged.channels[0]
    await _execute(
        staged.settings,
        sa.insert(tables.channel_health_hours).values(
            [
                {"channel_id": a, "hour": now_hour - KEEP_HOURS - 1, "succeeded": 5, "failed": 0},
                {"channel_id": a, "hour": now_hour - KEEP_HOURS, "succeeded": 3, "failed": 0},
            ]
        ),
    )
    [item] = (await staged.queue.claim(owner="w", limit=1, lease_seconds=30)).deliveries
    await staged.queue.record([_done(item)], [], "w")
    hours = await _rows(staged.settings, sa.select(tables.channel_health_hours))
    assert sorted((h.hour - now_hour, h.succeeded) for h in hours) == [(-KEEP_HOURS, 3), (0, 1)]
