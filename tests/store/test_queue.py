"""The worker's queue (store/queue): named queries on its own connection, on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from bench.backlog import stage_backlog

from conftest import seed
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store import tables
from loadbell.store.db import create_engine, sqlite_path
from loadbell.store.queue import (
    ATTEMPT_COLUMNS,
    ATTEMPT_RESULT_FIELDS,
    CHANNEL_COLUMNS,
    CLAIMED_COLUMNS,
    OVERRIDE_COLUMNS,
    Claimed,
    Deferral,
    QueueConflict,
    QueueUnavailable,
    WorkQueue,
    postgres,
    queue_for,
    sqlite,
)
from store.queue_support import done as _done
from store.queue_support import rows as _rows

URL = "http://127.0.0.1:9/hook"  # never contacted: these tests only claim and record


def test_column_lists_hold_against_the_tables() -> None:
    """Every column the queries read or write by name is a column of its table."""
    by_alias = {"d": tables.deliveries, "e": tables.events}
    for alias, column in CLAIMED_COLUMNS:
        assert column in by_alias[alias].c, f"{alias}.{column}"
    assert set(CHANNEL_COLUMNS) <= set(tables.channels.c.keys())
    assert set(OVERRIDE_COLUMNS) <= set(tables.channel_overrides.c.keys())
    # The claimed fields are read in the order of CLAIMED_COLUMNS, plus the claim's lease.
    assert len(Claimed._fields) == len(CLAIMED_COLUMNS) + 1
    assert Claimed._fields[-1] == "lease_until"


@pytest.mark.parametrize("module", [sqlite, postgres], ids=["sqlite", "postgresql"])
def test_written_columns_are_table_columns(module: Any) -> None:
    """The columns named in each INSERT, UPDATE and SET exist in the tables."""
    known = {t.name: set(t.c.keys()) for t in tables.metadata.sorted_tables}
    statements = [v for k, v in vars(module).items() if k.isupper() and isinstance(v, str)]
    assert statements
    for sql in statements:
        for table, cols in re.findall(r"INSERT INTO (\w+) \(([^)]*)\)", sql):
            assert {c.strip() for c in cols.split(",")} <= known[table], sql
        for table, sets in re.findall(
            r"UPDATE (\w+)(?: AS \w+)? SET (.*?)\n\s*(?:FROM|WHERE)", sql, re.S
        ):
            names = set(re.findall(r"(\w+) = ", sets))
            assert names <= known[table], sql


async def test_the_result_row_type_holds_against_the_tables(pg_database: str) -> None:
    """PostgreSQL's ``attempt_result`` (migration 0016) has ATTEMPT_RESULT_FIELDS in their
    order, each of its column's type: the attempt row's in delivery_attempts (the JSON ones
    as text, cast on insert, and strings of a bounded length as text), the delivery's new
    state in deliveries."""
    conn = await asyncpg.connect(pg_database.replace("+asyncpg", ""))
    try:
        fields = await conn.fetch(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_type t ON t.typrelid = a.attrelid "
            "WHERE t.typname = 'attempt_result' AND a.attnum > 0 ORDER BY a.attnum"
        )
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_name IN ('delivery_attempts', 'deliveries')"
        )
    finally:
        await conn.close()
    assert tuple(name for name, _ in fields) == ATTEMPT_RESULT_FIELDS

    def plain(sql_type: str) -> str:
        sql_type = re.sub(r"\(.*\)", "", sql_type).strip()
        return {"character varying": "text", "json": "text"}.get(sql_type, sql_type)

    of = {(table, name): plain(kind) for table, name, kind in columns}
    for number, (name, kind) in enumerate(fields):
        table = "delivery_attempts" if number < len(ATTEMPT_COLUMNS) else "deliveries"
        assert plain(kind) == of[(table, name)], f"{name}: {kind} in the type"


@pytest.fixture
async def staged(settings: Settings) -> AsyncIterator[tuple[WorkQueue, int]]:
    """A queue on the test database with 10 deliveries staged (5 runs, each an ordered
    pair: test.started then test.finished)."""
    await seed(settings)
    box = SecretBox.from_settings(settings.secret_key, settings.secret_key_file)
    engine = create_engine(settings)
    await stage_backlog(engine, box, URL, 10, settings.base_url)
    await engine.dispose()
    queue = queue_for(settings)
    await queue.open()
    yield queue, 10
    await queue.close()


async def test_claims_lease_the_oldest_of_each_sequence(
    staged: tuple[WorkQueue, int], settings: Settings
) -> None:
    """A claim leases the first delivery of each run's sequence with its event and channel;
    the next one waits until the first has ended."""
    queue, _ = staged
    batch = await queue.claim(owner="w1", limit=100, lease_seconds=30)
    assert len(batch.deliveries) == 5
    assert {d.event_type for d in batch.deliveries} == {"test.started"}
    first = batch.deliveries[0]
    assert first.context["run"]["status"] == 2 and first.occurred_at.tzinfo is not None
    channel = batch.channels[first.channel_id]
    assert (channel["kind"], channel["enabled"], channel["deleted_at"]) == ("webhook", True, None)
    assert channel["secrets"] and channel["config"]["format"] == "loadimpact"
    assert (await queue.claim(owner="w2", limit=100, lease_seconds=30)).deliveries == []

    assert (await queue.record([_done(first)], [], "w1")).followers  # its follower may go now
    after = await queue.claim(owner="w2", limit=100, lease_seconds=30)
    assert [d.event_type for d in after.deliveries] == ["test.finished"]
    assert after.deliveries[0].order_key == first.order_key


async def test_only_an_ended_delivery_with_a_follower_reports_one(
    staged: tuple[WorkQueue, int], settings: Settings
) -> None:
    """A retry, and the end of the last delivery of a sequence, report no follower; the
    end of the first does."""
    queue, _ = staged
    first = (await queue.claim(owner="w1", limit=1, lease_seconds=30)).deliveries[0]
    assert not (await queue.record([_done(first, "pending")], [], "w1")).followers
    first = (await queue.claim(owner="w1", limit=1, lease_seconds=30)).deliveries[0]
    assert (await queue.record([_done(first)], [], "w1")).followers
    last = (await queue.claim(owner="w1", limit=100, lease_seconds=30)).deliveries
    last = [d for d in last if d.order_key == first.order_key]
    assert [d.event_type for d in last] == ["test.finished"]
    assert not (await queue.record([_done(last[0])], [], "w1")).followers


async def test_a_batch_written_twice_is_one_attempt(
    staged: tuple[WorkQueue, int], settings: Settings
) -> None:
    """Writing the same results again (a retried write) adds no attempt row and changes
    nothing."""
    queue, _ = staged
    item = (await queue.claim(owner="w", limit=1, lease_seconds=30)).deliveries[0]
    results = [_done(item, "pending")]
    await queue.record(results, [], "w")
    await queue.record(results, [], "w")
    attempts = await _rows(settings, sa.select(tables.delivery_attempts))
    assert [(a.delivery_id, a.number, a.outcome) for a in attempts] == [(item.id, 1, "retry")]


async def test_results_and_deferrals_are_one_transaction(
    staged: tuple[WorkQueue, int], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the deferrals of a write fail, its results are not written either; written again,
    everything is there once."""
    queue, _ = staged
    batch = (await queue.claim(owner="w", limit=2, lease_seconds=30)).deliveries
    done, later = batch
    module = sqlite if settings.is_sqlite else postgres
    monkeypatch.setattr(module, "DEFER", "UPDATE no_such_table SET x = 1")
    deferral = Deferral(later.id, later.series, later.lease_until, time.time() + 60)
    with pytest.raises(QueueUnavailable):
        await queue.record([_done(done)], [deferral], "w")
    assert await _rows(settings, sa.select(tables.delivery_attempts)) == []
    monkeypatch.undo()
    await queue.record([_done(done)], [deferral], "w")
    rows = {r.id: r for r in await _rows(settings, sa.select(tables.deliveries))}
    assert (rows[done.id].status, rows[done.id].attempts) == ("succeeded", 1)
    assert rows[later.id].lease_owner is None and rows[later.id].next_attempt_at > time.time()
    assert len(await _rows(settings, sa.select(tables.delivery_attempts))) == 1


async def test_a_lapsed_workers_claims_are_taken_over(
    staged: tuple[WorkQueue, int], settings: Settings
) -> None:
    """Deliveries leased to a worker whose heartbeat lapsed are claimable at once; a live
    worker's are not, and a lapsed worker's row is forgotten once its leases are over. A
    claim counts the leases it took over (the metrics' lease expiries), and only those."""
    queue, _ = staged
    now = time.time()
    assert await queue.heartbeat("alive", now + 30, forget_before=now - 60) == []
    assert await queue.heartbeat("dead", now + 30, forget_before=now - 60) == []
    taken = await queue.claim(owner="dead", limit=3, lease_seconds=30)
    assert len(taken.deliveries) == 3 and taken.taken_over == 0
    fresh = await queue.claim(owner="alive", limit=100, lease_seconds=30)
    assert len(fresh.deliveries) == 2 and fresh.taken_over == 0

    # "dead" stops beating: its row lapses.
    await queue.heartbeat("dead", time.time() - 1, forget_before=now - 60)
    lapsed = await queue.heartbeat("alive", time.time() + 30, forget_before=now - 60)
    assert lapsed == ["dead"]
    again = await queue.claim(owner="alive", limit=100, lease_seconds=30, dead_owners=lapsed)
    assert sorted(d.id for d in again.deliveries) == sorted(d.id for d in taken.deliveries)
    assert again.taken_over == 3
    # The late result of the presumed-dead worker is fenced off.
    await queue.record([_done(taken.deliveries[0])], [], "dead")
    rows = {r.id: r for r in await _rows(settings, sa.select(tables.deliveries))}
    assert rows[taken.deliveries[0].id].lease_owner == "alive"

    await queue.heartbeat("alive", time.time() + 30, forget_before=time.time())
    names = [r.name for r in await _rows(settings, sa.select(tables.workers))]
    assert names == ["alive"]
    await queue.leave("alive")
    assert await _rows(settings, sa.select(tables.workers)) == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claim_passes_over_rows_another_claim_is_taking(
    staged: tuple[WorkQueue, int],
) -> None:
    """While another transaction holds the oldest due rows locked (a claim under way in
    another worker), a claim leases the next due rows instead of coming back empty, and
    none of the locked ones."""
    queue, _ = staged
    assert isinstance(queue, postgres.PostgresQueue)
    other = await asyncpg.connect(queue.dsn)
    try:
        async with other.transaction():
            locked = [
                r["id"]
                for r in await other.fetch(
                    "SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_id "
                    "WHERE e.type = 'test.started' ORDER BY d.id LIMIT 2 FOR UPDATE OF d"
                )
            ]
            batch = await queue.claim(owner="w2", limit=2, lease_seconds=30)
    finally:
        await other.close()
    got = [d.id for d in batch.deliveries]
    assert len(got) == 2 and not set(got) & set(locked), (got, locked)


async def test_a_claim_leases_no_more_than_each_channels_room(
    staged: tuple[WorkQueue, int],
) -> None:
    """With a channel cap, a claim leaves due rows beyond the channel's room and says so."""
    queue, _ = staged
    batch = await queue.claim(owner="w", limit=100, lease_seconds=30, channel_cap=2)
    assert len(batch.deliveries) == 2
    assert batch.left and not batch.full


async def test_an_unreachable_database_is_one_error(settings: Settings, tmp_path: Any) -> None:
    """A queue whose database cannot be reached raises QueueUnavailable, not the driver's
    own error."""
    if settings.is_sqlite:
        broken = Settings(database_url=f"sqlite:///{tmp_path}/missing/dir/x.db")
    else:
        broken = Settings(database_url="postgresql://postgres@127.0.0.1:1/test")
    queue = queue_for(broken)
    with contextlib.suppress(QueueUnavailable):  # PostgreSQL's pool connects on first use
        await queue.open()
    with pytest.raises(QueueUnavailable):
        await queue.claim(owner="w", limit=1, lease_seconds=30)
    with pytest.raises(QueueUnavailable):
        await queue.heartbeat("w", time.time() + 3, forget_before=0)
    await queue.close()


async def test_held_deliveries_are_released_when_their_window_ends(
    staged: tuple[WorkQueue, int], settings: Settings
) -> None:
    """release_held makes held deliveries whose release time (by the clock given) has come
    pending and due at once; later ones stay held, and held ones are never claimed."""
    queue, _ = staged
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            ids = [r.id for r in await conn.execute(sa.select(tables.deliveries.c.id))]
            early, late = ids[0], ids[1]
            for delivery_id, until in ((early, 1000.0), (late, 5000.0)):
                await conn.execute(
                    sa.update(tables.deliveries)
                    .where(tables.deliveries.c.id == delivery_id)
                    .values(status="held", next_attempt_at=until, reason="quiet_hours")
                )
    finally:
        await engine.dispose()
    claimed = await queue.claim(owner="w1", limit=100, lease_seconds=30)
    assert early not in {d.id for d in claimed.deliveries}

    assert await queue.release_held(999.0) == 0
    assert await queue.release_held(1000.0) == 1
    rows = await _rows(
        settings,
        sa.select(tables.deliveries.c.id, tables.deliveries.c.status, tables.deliveries.c.reason)
        .where(tables.deliveries.c.id.in_([early, late]))
        .order_by(tables.deliveries.c.id),
    )
    assert [tuple(r) for r in rows] == [
        (early, "pending", "quiet_hours"),
        (late, "held", "quiet_hours"),
    ]
    [due] = await _rows(
        settings,
        sa.select(tables.deliveries.c.next_attempt_at).where(tables.deliveries.c.id == early),
    )
    assert due[0] <= time.time()  # due now by the real clock, whatever the given one said


async def test_a_sqlite_claim_waits_for_the_lock_without_blocking_the_loop(
    staged: tuple[WorkQueue, int], settings: Settings
) -> None:
    """While another connection holds SQLite's write lock, a claim waits for it with the
    event loop running (the connection's busy handler stays off, D71), and claims once
    the lock is free."""
    if not settings.is_sqlite:
        pytest.skip("SQLite's write lock")
    queue, staged_count = staged
    other = sqlite3.connect(sqlite_path(settings.database_url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        claiming = asyncio.create_task(queue.claim(owner="w", limit=100, lease_seconds=30))
        # A claim that waited inside SQLite (a busy handler) would hold the loop until it
        # gave up with "database is locked", and be done, failed, by the time these return.
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert not claiming.done(), "the claim waits for the lock, on the loop"
        other.execute("COMMIT")
        claimed = await asyncio.wait_for(claiming, timeout=10)
        assert len(claimed.deliveries) == staged_count // 2  # the first of each ordered pair
    finally:
        other.close()


# Ordered pairs staged for the concurrent writes: enough rows that two writes let go
# together are still both under way when they meet (200 deadlocked in 1 run of 3 when
# their orders differed).
PAIRS = 2000


# An attempt row as another transaction holds it (uncommitted) to make a write wait.
_ATTEMPT_ROW = (
    "INSERT INTO delivery_attempts (delivery_id, series, number, started_at, duration_ms, "
    "outcome, request_headers) VALUES ($1, $2, $3, now(), 0, 'retry', '{}')"
)


async def _until_waiting(conn: asyncpg.Connection, n: int) -> None:
    """Return once ``n`` transactions wait for another's row (at most a minute)."""
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
    deadline = time.monotonic() + 60
    while await conn.fetchval(query) < n:
        assert time.monotonic() < deadline, f"{n} writes never waited for the held rows"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _writers_held(
    settings: Settings, queue: WorkQueue, first: list[Claimed]
) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """Hold result writes until the block ends, and let them go at the same moment.

    On PostgreSQL, another transaction inserts the first attempt row of each of ``first``
    (uncommitted): a write that reaches one of those rows waits there, holding no more
    than it wrote before it, and all are let go by one rollback. On SQLite, another
    connection holds the write lock. Yields an async function that waits until ``n``
    writes are held (on SQLite, which cannot say, a moment)."""
    if settings.is_sqlite:
        other = sqlite3.connect(sqlite_path(settings.database_url), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")

        async def a_moment(n: int) -> None:
            await asyncio.sleep(0.3)

        try:
            yield a_moment
            other.execute("COMMIT")
        finally:
            other.close()
        return
    assert isinstance(queue, postgres.PostgresQueue)
    blocker = await asyncpg.connect(queue.dsn)
    watch = await asyncpg.connect(queue.dsn)

    async def waiting(n: int) -> None:
        await _until_waiting(watch, n)

    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.executemany(_ATTEMPT_ROW, [(d.id, d.series, d.attempts + 1) for d in first])
        yield waiting
        await transaction.rollback()
    finally:
        await blocker.close()
        await watch.close()


async def test_a_lapsed_worker_and_its_successor_write_the_same_attempts_at_once(
    settings: Settings,
) -> None:
    """A worker that lapsed (a database outage) and the worker that took its claims over
    may write results of the same attempts at the same moment, each batch in the order
    its attempts ended. Both writes go through, and each delivery keeps the successor's
    result. (Rows written in the batches' own orders deadlocked on PostgreSQL: each write
    waited for an attempt row the other had inserted.)"""
    await seed(settings)
    box = SecretBox.from_settings(settings.secret_key, settings.secret_key_file)
    engine = create_engine(settings)
    await stage_backlog(engine, box, URL, 2 * PAIRS, settings.base_url)
    await engine.dispose()
    lapsed, successor = queue_for(settings), queue_for(settings)
    await lapsed.open()
    await successor.open()
    try:
        now = time.time()
        taken = await lapsed.claim(owner="lapsed", limit=2 * PAIRS, lease_seconds=30)
        await lapsed.heartbeat("lapsed", now - 1, forget_before=now - 60)
        again = await successor.claim(
            owner="successor", limit=2 * PAIRS, lease_seconds=30, dead_owners=["lapsed"]
        )
        assert len(taken.deliveries) == len(again.deliveries) == PAIRS  # the first of each pair
        late = [_done(d) for d in reversed(taken.deliveries)]
        current = [_done(d) for d in again.deliveries]

        # Each write held at its first attempt row: had they run in the batches' orders,
        # the lapsed worker's from the last delivery, its successor's from the first.
        ends = [again.deliveries[0], again.deliveries[-1]]
        async with _writers_held(settings, successor, ends) as held:
            writes = [
                asyncio.create_task(lapsed.record(late, [], "lapsed")),
                asyncio.create_task(successor.record(current, [], "successor")),
            ]
            await held(2)
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)], results
    finally:
        await lapsed.close()
        await successor.close()

    ids = {d.id for d in again.deliveries}
    rows = [r for r in await _rows(settings, sa.select(tables.deliveries)) if r.id in ids]
    assert {(r.status, r.attempts, r.lease_owner) for r in rows} == {("succeeded", 1, None)}
    attempts = await _rows(settings, sa.select(tables.delivery_attempts))
    assert len(attempts) == PAIRS
    assert {a.worker for a in attempts} == {"successor"}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_deadlock_is_a_conflict_not_an_outage(
    staged: tuple[WorkQueue, int], settings: Settings
) -> None:
    """A write that PostgreSQL rolls back to break a deadlock raises QueueConflict (tried
    again at once, and no outage in the log), and the queue goes on working."""
    queue, _ = staged
    assert isinstance(queue, postgres.PostgresQueue)
    first, second = (await queue.claim(owner="w", limit=2, lease_seconds=30)).deliveries
    other = await asyncpg.connect(queue.dsn)
    try:
        transaction = other.transaction()
        await transaction.start()
        # The write takes the first attempt row and waits for the second; then the other
        # transaction waits for the first: a cycle the server breaks by failing the one
        # that waited first, the write.
        await other.execute(_ATTEMPT_ROW, second.id, second.series, second.attempts + 1)
        write = asyncio.create_task(queue.record([_done(first), _done(second)], [], "w"))
        await _until_waiting(other, 1)
        await other.execute(_ATTEMPT_ROW, first.id, first.series, first.attempts + 1)
        with pytest.raises(QueueConflict) as raised:
            await write
        assert "deadlock" in str(raised.value)
        await transaction.rollback()
    finally:
        await other.close()
    await queue.record([_done(first), _done(second)], [], "w")  # written again, it goes in
    rows = {r.id: r for r in await _rows(settings, sa.select(tables.deliveries))}
    assert [(rows[d.id].status, rows[d.id].attempts) for d in (first, second)] == [
        ("succeeded", 1),
        ("succeeded", 1),
    ]
    assert len(await _rows(settings, sa.select(tables.delivery_attempts))) == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_heartbeat_passes_over_a_lapsed_row_being_written(
    staged: tuple[WorkQueue, int], settings: Settings
) -> None:
    """Two workers back after an outage longer than the lease each write their heartbeat
    while the other's row is old enough to forget. A heartbeat does not wait for a row
    another heartbeat holds (each waited for the other's: a deadlock); the row is kept, and
    forgotten by a later heartbeat if its worker does not come back."""
    queue, _ = staged
    assert isinstance(queue, postgres.PostgresQueue)
    now = time.time()
    await queue.heartbeat("other", now - 100, forget_before=now - 200)
    other = await asyncpg.connect(queue.dsn)
    try:
        async with other.transaction():
            # "other" is writing its heartbeat: its row is locked until it commits.
            await other.execute("UPDATE workers SET alive_until = $1 WHERE name = 'other'", now + 3)
            beat = asyncio.create_task(queue.heartbeat("w", now + 3, forget_before=now - 30))
            done, _ = await asyncio.wait([beat], timeout=30)
            assert done, "the heartbeat waited for the row another heartbeat holds"
            assert beat.result() == ["other"]  # lapsed, as last committed
        names = [r.name for r in await _rows(settings, sa.select(tables.workers))]
        assert sorted(names) == ["other", "w"]
        await queue.heartbeat("other", time.time() - 100, forget_before=0)  # never came back
    finally:
        await other.close()
    await queue.heartbeat("w", time.time() + 3, forget_before=time.time() - 30)
    names = [r.name for r in await _rows(settings, sa.select(tables.workers))]
    assert names == ["w"]
