"""The delivery log's pages: plans that read an index and never sort, pages that hold every
match once, migration 0007 both ways, and reads that leave the event loop's thread."""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import PG_ADMIN_URL
from loadbell.settings import Settings
from loadbell.store import delivery_log, migrate
from loadbell.store.db import create_engine, reader, slow_reader
from loadbell.store.delivery_log import LogFilter, range_select, read_page
from loadbell.store.optimize import MIN_ROWS, Optimizer
from loadbell.store.redelivery import FailedFilter, count_failed, counted_failed
from loadbell.store.tables import channels, deliveries, events, organizations

STATUSES = ("pending", "succeeded", "failed")
TYPES = ("test.started", "test.finished", "test.threshold_failed", "project.updated")
NOW = datetime.now(UTC)
ORGS = (1, 2, 3)
CHANNELS = {1: [1, 2, 3], 2: [4, 5], 3: [6]}  # organization -> channels
RUNS = {1: [11, 12, 13], 2: [21, 22], 3: [31]}  # organization -> runs


def plan(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` deliveries over three organizations (very unequal), in id order."""
    rng = random.Random(seed)
    rows = []
    for i in range(1, n + 1):
        org = rng.choices(ORGS, (0.7, 0.25, 0.05))[0]
        kind = rng.choice(TYPES)
        rows.append(
            {
                "id": i,
                "event_id": i,
                "organization_id": org,
                "channel_id": rng.choice(CHANNELS[org]),
                "run_id": None if kind == "project.updated" else rng.choice(RUNS[org]),
                "status": rng.choices(STATUSES, (0.05, 0.8, 0.15))[0],
                "event_type": kind,
            }
        )
    return rows


async def stage(engine: AsyncEngine, rows: list[dict[str, Any]], copies: bool = True) -> None:
    """The organizations, channels, events and deliveries of ``rows``, straight into the
    tables (``copies=False``: without the log's columns, as before migration 0007)."""
    async with engine.begin() as conn:
        await conn.execute(sa.insert(organizations), [{"id": o, "name": f"org {o}"} for o in ORGS])
        await conn.execute(
            sa.insert(channels),
            [
                {"id": c, "organization_id": o, "kind": "webhook", "name": f"c{c}", "config": {}}
                for o, ids in CHANNELS.items()
                for c in ids
            ],
        )
        await conn.execute(
            sa.insert(events),
            [
                {
                    "id": r["event_id"],
                    "type": r["event_type"],
                    "occurred_at": NOW,
                    "organization_id": r["organization_id"],
                    "run_id": r["run_id"],
                    "context": {},
                }
                for r in rows
            ],
        )
        columns = {"organization_id", "event_type", "run_id"} if copies else set()
        await conn.execute(
            sa.insert(deliveries),
            [
                {
                    "id": r["id"],
                    "uuid": str(uuid.uuid4()),
                    "event_id": r["event_id"],
                    "channel_id": r["channel_id"],
                    "status": r["status"],
                    "next_attempt_at": 4_000_000_000.0,
                    **{k: r[k] for k in columns},
                }
                for r in rows
            ],
        )
        if engine.dialect.name == "postgresql":
            for table in ("organizations", "channels", "events", "deliveries"):
                await conn.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                        f" (SELECT max(id) FROM {table}))"
                    )
                )


def filters() -> Iterator[LogFilter]:
    """Every filter the log takes, alone and combined, for callers of one and of several
    organizations."""
    for orgs in ((1,), (1, 2, 3), (3,)):
        for status, kind in itertools.product((None, *STATUSES), (None, *TYPES)):
            yield LogFilter(orgs, status=status, event_type=kind)
    for channel, status, kind in itertools.product(
        (1, 6), (None, "pending", "failed"), (None, "test.threshold_failed")
    ):
        yield LogFilter((), channel_id=channel, status=status, event_type=kind)
    for run, status, kind in itertools.product((11, 31), (None, "failed"), (None, "test.finished")):
        yield LogFilter((), run_id=run, status=status, event_type=kind)


def expected(rows: list[dict[str, Any]], where: LogFilter) -> list[int]:
    def matches(r: dict[str, Any]) -> bool:
        if where.channel_id is None and where.run_id is None:
            if r["organization_id"] not in where.organization_ids:
                return False
        return all(
            value is None or r[name] == value
            for name, value in (
                ("channel_id", where.channel_id),
                ("run_id", where.run_id),
                ("status", where.status),
                ("event_type", where.event_type),
            )
        )

    ids = [r["id"] for r in rows if matches(r)]
    return ids if where.ascending else ids[::-1]


@pytest.fixture(params=["sqlite", "postgresql"])
async def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    request.getfixturevalue("pg_database")  # skips (or fails under CI) without PostgreSQL
    name = f"loadbell_log_{uuid.uuid4().hex[:8]}"
    admin = PG_ADMIN_URL.replace("+asyncpg", "")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@pytest.fixture
async def engine(settings: Settings) -> Any:
    eng = create_engine(settings)
    yield eng
    await eng.dispose()


async def test_pages_hold_every_match_once_in_order(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paging from the start to the last page with each filter and combination gives every
    matching delivery exactly once, in order (newest first; a run's oldest first), also
    when pages are cut short by the bound on the rows one page reads."""
    rows = plan(600)
    await stage(engine, rows)
    # Small pages and a small bound, so that most listings take many pages, and rare
    # combinations meet the bound (short pages that still have a next one).
    monkeypatch.setattr(delivery_log, "SCAN", 23)
    short_pages = 0
    async with reader(engine).connect() as conn:
        for where in filters():
            got: list[int] = []
            cursor = None
            for _ in range(len(rows) + 2):
                page = await read_page(conn, where, cursor=cursor, limit=7)
                got.extend(r.id for r in page.rows)
                if page.next_cursor is None:
                    break
                short_pages += len(page.rows) < 7
                assert page.next_cursor != cursor, where
                cursor = page.next_cursor
            assert got == expected(rows, where), where
    assert short_pages > 0  # the bound was met, and paging went on past it


async def seed_file(path: Path) -> None:
    """A migrated SQLite file at ``path`` holding ``plan(3000)``, for reading its plans."""
    eng = create_engine(Settings(database_url=f"sqlite:///{path}"), checkpoints=False)
    try:
        await migrate.upgrade(eng)
        await stage(eng, plan(3000))
    finally:
        await eng.dispose()


def test_every_query_shape_reads_an_index_and_never_sorts(tmp_path: Path) -> None:
    """SQLite's plan of each shape of delivery-log statement (each filter and combination,
    first and later pages, the bounded range and its edge) searches an index of
    ``deliveries`` and sorts nothing: no "USE TEMP B-TREE", no full scan. Checked without
    statistics and again after ANALYZE."""
    path = tmp_path / "plans.db"

    asyncio.run(seed_file(path))
    db = sqlite3.connect(path)
    try:
        for analyzed in (False, True):
            if analyzed:
                db.execute("ANALYZE")
            checked = 0
            for where in filters():
                for eq in where.partitions():
                    for cursor, edge in ((None, None), (1500, 600 if where.ascending else 900)):
                        page, edge_query = range_select(
                            eq, ascending=where.ascending, cursor=cursor, edge=edge, limit=100
                        )
                        for statement in (page, edge_query):
                            if statement is None:
                                continue
                            sql = str(
                                statement.compile(
                                    dialect=sqlite_dialect.dialect(),
                                    compile_kwargs={"literal_binds": True},
                                )
                            )
                            steps = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql)]
                            assert len(steps) == 1, (sql, steps)
                            assert steps[0].startswith("SEARCH deliveries USING "), (sql, steps)
                            assert "INDEX" in steps[0], (sql, steps)
                            assert not any("TEMP B-TREE" in s for s in steps), (sql, steps)
                            checked += 1
            assert checked > 100
    finally:
        db.close()


async def test_migration_0007_fills_the_copies_and_goes_both_ways(
    unmigrated_url: str,
) -> None:
    """Upgrading a log made at 0006 to 0007 copies each delivery's organization, event type
    and run from its event and adds the indexes; the log then lists by them. Downgrading
    removes the columns and indexes and leaves the deliveries; upgrading again refills."""
    eng = create_engine(Settings(database_url=unmigrated_url), checkpoints=False)
    rows = plan(120)
    log_indexes = {
        "ix_deliveries_run_id",
        "ix_deliveries_log",
        "ix_deliveries_log_status",
        "ix_deliveries_log_event_type",
    }

    async def shape() -> tuple[set[str], dict[str, list[str]]]:
        async with eng.connect() as conn:

            def inspect(sync: Any) -> tuple[set[str], dict[str, list[str]]]:
                found = sa.inspect(sync)
                columns = {c["name"] for c in found.get_columns("deliveries")}
                indexes = {
                    i["name"]: list(i["column_names"]) for i in found.get_indexes("deliveries")
                }
                return columns, indexes

            return await conn.run_sync(inspect)

    try:
        await migrate.upgrade(eng, "0006")
        await stage(eng, rows, copies=False)
        for _ in range(2):
            await migrate.upgrade(eng)
            columns, indexes = await shape()
            assert {"organization_id", "event_type", "run_id"} <= columns
            assert log_indexes <= set(indexes)
            assert indexes["ix_deliveries_channel_id"] == ["channel_id", "id"]
            # The same indexes as tables.py declares.
            declared = {i.name: [c.name for c in i.columns] for i in deliveries.indexes}
            assert {k: v for k, v in indexes.items() if k in declared} == declared
            async with eng.connect() as conn:
                copied = {
                    r.id: (r.organization_id, r.event_type, r.run_id)
                    for r in await conn.execute(sa.select(deliveries))
                }
                failed = LogFilter((2,), status="failed")
                page = await read_page(conn, failed, cursor=None, limit=500)
            assert copied == {
                r["id"]: (r["organization_id"], r["event_type"], r["run_id"]) for r in rows
            }
            assert [r.id for r in page.rows] == expected(rows, failed)
            await migrate.downgrade(eng, "0006")
            columns, indexes = await shape()
            assert not {"organization_id", "event_type", "run_id"} & columns
            assert not log_indexes & set(indexes)
            assert indexes["ix_deliveries_channel_id"] == ["channel_id"]
            async with eng.connect() as conn:
                count = await conn.execute(sa.select(sa.func.count()).select_from(deliveries))
                assert count.scalar_one() == len(rows)
    finally:
        await eng.dispose()


async def test_slow_reads_leave_the_event_loops_thread(tmp_path: Path) -> None:
    """On SQLite the slow reader's statements run on a thread of their own, while the
    engine's (and its ``reader``'s) run on the event loop's thread: a long read cannot
    hold up the loop, and the loop keeps serving while it runs."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'threads.db'}")
    eng = create_engine(settings, checkpoints=False)
    slow = slow_reader(settings, eng)

    def with_thread_function(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.run_async(lambda raw: raw.create_function("thread_id", 0, threading.get_ident))

    for each in (eng, slow):
        sa.event.listen(each.sync_engine, "connect", with_thread_function)
    loop_thread = threading.get_ident()
    try:
        await migrate.upgrade(eng)
        async with reader(eng).connect() as conn:
            inline = (await conn.execute(sa.text("SELECT thread_id()"))).scalar_one()
        async with slow.connect() as conn:
            off_loop = (await conn.execute(sa.text("SELECT thread_id()"))).scalar_one()
            # A read that takes a while: the loop runs a task meanwhile.
            ticked = asyncio.Event()
            ticker = asyncio.get_running_loop().call_soon(ticked.set)
            long_read = sa.text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                " WHERE i < 3000000) SELECT count(*) FROM n"
            )
            counted = (await conn.execute(long_read)).scalar_one()
            assert ticker is not None and ticked.is_set()
        assert counted == 3_000_000
        assert inline == loop_thread
        assert off_loop != loop_thread
        # Read-only: a write through it is refused.
        async with slow.connect() as conn:
            with pytest.raises(sa.exc.OperationalError, match=r"readonly|read-only|query_only"):
                await conn.execute(sa.text("DELETE FROM deliveries"))
    finally:
        await slow.dispose()
        await eng.dispose()


def test_optimizer_analyzes_a_log_without_statistics(tmp_path: Path) -> None:
    """``serve``'s optimizer takes statistics of a table that has none once it is large
    enough, at start (on its own thread), and leaves small tables to the planner's
    defaults; it runs once more when stopped."""
    path = tmp_path / "stats.db"

    async def make() -> None:
        eng = create_engine(Settings(database_url=f"sqlite:///{path}"), checkpoints=False)
        try:
            await migrate.upgrade(eng)
            await stage(eng, plan(MIN_ROWS + 10))
        finally:
            await eng.dispose()

    asyncio.run(make())

    def stats() -> set[str]:
        db = sqlite3.connect(path)
        try:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone():
                return set()
            return {r[0] for r in db.execute("SELECT DISTINCT tbl FROM sqlite_stat1")}
        finally:
            db.close()

    assert "deliveries" not in stats()
    optimizer = Optimizer(str(path)).start()
    try:
        deadline = threading.Event()
        for _ in range(600):  # up to a minute on a loaded machine
            if optimizer.runs >= 1:
                break
            deadline.wait(0.1)
        assert optimizer.runs >= 1
    finally:
        optimizer.stop()
    assert optimizer.runs >= 2  # and once more at stop
    assert {"deliveries", "events"} <= stats()
    assert "organizations" not in stats()  # 3 rows: the planner's defaults serve


async def test_backward_pages_hold_every_match_once(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paging backward (the web's "Newer", a run's "Earlier") from the far end to the start
    gives every match exactly once, each page in the log's own order, also past the bound
    on the rows a page reads."""
    rows = plan(300)
    await stage(engine, rows)
    monkeypatch.setattr(delivery_log, "SCAN", 23)
    async with reader(engine).connect() as conn:
        for where in filters():
            want = expected(rows, where)
            got: list[int] = []
            # The far end: before every id for a run (read descending), after id 0 else.
            cursor: int | None = 10**9 if where.ascending else 0
            for _ in range(len(rows) + 2):
                page = await read_page(conn, where, cursor=cursor, limit=7, backward=True)
                shown = [r.id for r in page.rows]
                assert shown == sorted(shown, reverse=not where.ascending), where
                got = shown + got
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert got == want, where


async def test_the_total_is_exact_up_to_its_bound(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The total is exact up to TOTAL_CAP and capped past it; with a filter checked row by
    row and a range longer than SCAN, it is a lower bound and says so."""
    rows = plan(300)
    await stage(engine, rows)
    monkeypatch.setattr(delivery_log, "TOTAL_CAP", 40)
    seen = {"exact": 0, "capped": 0, "at least": 0}
    async with reader(engine).connect() as conn:
        for where in filters():
            want = len(expected(rows, where))
            total = await delivery_log.count(conn, where)
            if want <= 40:
                assert (total.count, total.exact, total.capped) == (want, True, False), where
                seen["exact"] += 1
            else:
                assert (total.count, total.exact, total.capped) == (40, False, True), where
                seen["capped"] += 1
        monkeypatch.setattr(delivery_log, "SCAN", 23)
        for where in filters():
            want = len(expected(rows, where))
            total = await delivery_log.count(conn, where)
            assert total.count <= min(want, 40), where
            if not total.exact and not total.capped:
                seen["at least"] += 1
    assert all(seen.values()), seen


def test_the_failed_count_reads_the_status_index_only(tmp_path: Path) -> None:
    """The log page's count of failed deliveries (``redelivery.count_failed``: an
    organization's failures of its live channels, narrowed by the page's filters) finds
    them in ``ix_deliveries_log_status`` and checks the channel there (0015), without
    reading a delivery's row, and the capped count reads it newest first without sorting."""
    path = tmp_path / "count.db"

    asyncio.run(seed_file(path))
    db = sqlite3.connect(path)
    try:
        for analyzed in (False, True):
            if analyzed:
                db.execute("ANALYZE")
            shapes = (FailedFilter(1), FailedFilter(1, event_type="test.finished"))
            for failed, counted in itertools.product(shapes, (False, True)):
                statement = counted_failed(failed, 5000 if counted else None)
                sql = str(
                    statement.compile(
                        dialect=sqlite_dialect.dialect(), compile_kwargs={"literal_binds": True}
                    )
                )
                steps = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql)]
                assert not any("TEMP B-TREE" in s for s in steps), (sql, steps)
                reads = [s for s in steps if "deliveries" in s]
                assert reads == [
                    "SEARCH deliveries USING COVERING INDEX ix_deliveries_log_status"
                    " (organization_id=? AND status=?)"
                ], (sql, steps)
    finally:
        db.close()


async def test_the_failed_count_is_exact_up_to_its_cap(engine: AsyncEngine) -> None:
    """``count_failed`` counts an organization's failures, and with a cap counts the
    newest ``cap + 1`` at most; either way with the newest one's id."""
    rows = plan(300)
    await stage(engine, rows)
    async with reader(engine).connect() as conn:
        for org in ORGS:
            failed = [r["id"] for r in rows if r["organization_id"] == org]
            failed = [i for i in failed if rows[i - 1]["status"] == "failed"]
            newest = max(failed, default=None)
            assert await count_failed(conn, FailedFilter(org)) == (len(failed), newest)
            for cap in {len(failed), max(len(failed) - 1, 0), 3}:
                got = await count_failed(conn, FailedFilter(org), cap)
                assert got == (min(len(failed), cap + 1), newest), (org, cap)
