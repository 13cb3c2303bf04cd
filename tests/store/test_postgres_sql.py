"""The run update's statements give one answer whichever way they run: on PostgreSQL through
SQLAlchemy (the first statement of a transaction) or on asyncpg's connection once it has
begun (store/postgres_sql.py); on SQLite on the sqlite3 connection (store/inline_sql.py)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from bench.backlog import create_load_test, create_runs, create_webhook_channel
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store import channels, context, inline_sql, mutes, postgres_sql, tables
from loadbell.store.db import transaction

URL = "http://127.0.0.1:9/"  # never contacted
BEGUN = [False, True]  # whether a statement ran before in the transaction


async def _begin(conn: AsyncConnection, begun: bool, settings: Settings) -> None:
    """Run a statement first when ``begun``; on PostgreSQL that decides the path taken."""
    if begun:
        await conn.execute(sa.text("SELECT 1"))
    on_asyncpg = postgres_sql.asyncpg_of(conn) is not None
    assert on_asyncpg == (begun and not settings.is_sqlite)


def _row(
    channel_id: int, key: str | None, *, status: str = "pending", lease: bool = False
) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "event_id": None,
        "channel_id": channel_id,
        "target": None,
        "order_key": key,
        "status": status,
        "reason": None if status == "pending" else "muted",
        "series": 1,
        "attempts": 0,
        "next_attempt_at": 1.5,
        "lease_until": 2.5 if lease else None,
        "lease_owner": "me" if lease else None,
        "organization_id": 1,
        "event_type": "test.started",
        "run_id": None,
    }


def _event(run_id: int | None = None) -> dict[str, Any]:
    return {
        "type": "test.started",
        "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
        "organization_id": 1,
        "project_id": 1,
        "load_test_id": None,
        "run_id": run_id,
        "context": {"run": {"id": run_id}, "é": [1.5, None]},
    }


@pytest.mark.parametrize("begun", BEGUN)
async def test_an_event_and_its_deliveries_keep_leases_only_at_the_head_of_their_sequence(
    engine: AsyncEngine, settings: Settings, begun: bool
) -> None:
    """The event and its rows are written (ids in the rows' order, the rows' event id set),
    and an offered lease is dropped from a row whose order key has a pending delivery."""
    box = SecretBox(settings.secret_key)
    async with transaction(engine) as conn:
        channel_id = await create_webhook_channel(conn, box, URL, ["test.started"])
        earlier = _row(channel_id, "busy")
        await inline_sql.insert_event_with_deliveries(conn, _event(), [earlier])
    for many in (False, True):
        rows = [_row(channel_id, "free", lease=True)]
        if many:  # a sequence waiting, one without order, one recorded but not sent
            rows = [
                _row(channel_id, "busy", lease=True),
                _row(channel_id, f"new {many}", lease=True),
                _row(channel_id, None, lease=True),
                _row(channel_id, "muted", status="suppressed"),
            ]
        async with transaction(engine) as conn:
            await _begin(conn, begun, settings)
            event_id, ids = await inline_sql.insert_event_with_deliveries(conn, _event(), rows)
        assert ids == sorted(ids) and len(set(ids)) == len(rows)
        assert all(r["event_id"] == event_id for r in rows)
        kept = [r["lease_owner"] is not None for r in rows]
        assert kept == ([True] if not many else [False, True, True, False])
        async with engine.connect() as conn:
            stored = {
                r.id: r
                for r in await conn.execute(
                    sa.select(tables.deliveries).where(tables.deliveries.c.id.in_(ids))
                )
            }
            event = (
                await conn.execute(sa.select(tables.events).where(tables.events.c.id == event_id))
            ).one()
        assert event.context == _event()["context"]
        assert event.occurred_at == _event()["occurred_at"]
        for i, row in zip(ids, rows, strict=True):
            got = stored[i]
            assert (got.uuid, got.event_id, got.order_key, got.status) == (
                row["uuid"],
                event_id,
                row["order_key"],
                row["status"],
            )
            assert (got.lease_owner, got.lease_until) == (row["lease_owner"], row["lease_until"])


@pytest.mark.parametrize("begun", BEGUN)
async def test_staging_tells_postgresqls_workers_only_about_rows_left_to_claims(
    engine: AsyncEngine, settings: Settings, begun: bool
) -> None:
    """A pending row without a lease sends NOTIFY loadbell_outbox at commit; rows that all
    kept their lease, or are not pending, send none."""
    if settings.is_sqlite:
        pytest.skip("NOTIFY is PostgreSQL's; SQLite's workers watch the file")
    box = SecretBox(settings.secret_key)
    async with transaction(engine) as conn:
        channel_id = await create_webhook_channel(conn, box, URL, ["test.started"])
    heard: asyncio.Queue[str] = asyncio.Queue()
    dsn = make_url(settings.database_url).set(drivername="postgresql").render_as_string(False)
    listener = await asyncpg.connect(dsn)
    try:
        await listener.add_listener(postgres_sql.NOTIFY_CHANNEL, lambda *a: heard.put_nowait(a[3]))
        for rows, told in (
            ([_row(channel_id, "a", lease=True)], False),
            ([_row(channel_id, "b", status="suppressed")], False),
            ([_row(channel_id, "c", lease=True), _row(channel_id, "d")], True),
            ([_row(channel_id, "e")], True),
        ):
            async with transaction(engine) as conn:
                await _begin(conn, begun, settings)
                await inline_sql.insert_event_with_deliveries(conn, _event(), rows)
            # A marker after each: the notifications of one commit arrive before the next's.
            await listener.execute(f"NOTIFY {postgres_sql.NOTIFY_CHANNEL}, 'marker'")
            got = [await asyncio.wait_for(heard.get(), 10)]
            while got[-1] != "marker":
                got.append(await asyncio.wait_for(heard.get(), 10))
            assert got == (["", "marker"] if told else ["marker"])
    finally:
        await listener.close()


@pytest.mark.parametrize("begun", BEGUN)
async def test_a_run_update_with_its_status_change_reads_back_the_same(
    engine: AsyncEngine, settings: Settings, begun: bool
) -> None:
    """The run's columns (JSON, timestamps) and its history row are written the same either
    way, and the run reads back (locked or not) as SQLAlchemy's statement reads it."""
    async with transaction(engine) as conn:
        (run_id,) = await create_runs(conn, await create_load_test(conn), 1)
    started = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    async with transaction(engine) as conn:
        await _begin(conn, begun, settings)
        await inline_sql.update_run(
            conn,
            run_id,
            {
                "status": 5,
                "started_at": started.astimezone(timezone(timedelta(hours=2))),  # stored in UTC
                "ended_at": started + timedelta(hours=1),
                "result": "passed",
                "metrics": {"p95": 12.5, "é": [1, 2]},
                "comparison": None,
                "updated_at": started,
            },
            status_change=True,
        )
        got = {lock: await context.run_with_names(conn, run_id, lock=lock) for lock in BEGUN}
    async with engine.connect() as conn:
        expected = dict(
            (await conn.execute(context._RUN_WITH_NAMES, {"b_run_id": run_id})).one()._mapping
        )
        history = (
            await conn.execute(
                sa.select(tables.run_status_changes.c.status)
                .where(tables.run_status_changes.c.run_id == run_id)
                .order_by(tables.run_status_changes.c.id)
            )
        ).scalars()
        assert list(history) == [-2, 5]  # Created (create_runs), then the update's
    assert expected["started_at"] == started and expected["metrics"] == {"p95": 12.5, "é": [1, 2]}
    assert expected["comparison"] is None and expected["status"] == 5
    for read in got.values():
        assert read is not None
        assert {k: (type(v), v) for k, v in read.items()} == {
            k: (type(v), v) for k, v in expected.items()
        }


@pytest.mark.parametrize("begun", BEGUN)
async def test_the_fan_outs_reads_match_sqlalchemys(
    engine: AsyncEngine, settings: Settings, begun: bool
) -> None:
    """Live channels with the project's overrides, and the mutes in force, read the same as
    SQLAlchemy's statements read them."""
    box = SecretBox(settings.secret_key)
    now = datetime.now(UTC)
    async with transaction(engine) as conn:
        first = await create_webhook_channel(conn, box, URL, ["test.started"])
        overridden = await create_webhook_channel(conn, box, URL, ["test.finished"])
        await conn.execute(
            sa.insert(tables.channel_overrides).values(
                channel_id=overridden,
                project_id=1,
                enabled=False,
                config={"format": "loadmance"},
                secrets=box.seal({"url": "http://127.0.0.1:9/project"}),
            )
        )
        for channel_id, until in ((None, now + timedelta(hours=1)), (first, now - timedelta(1))):
            await conn.execute(
                sa.insert(tables.mutes).values(
                    organization_id=1,
                    channel_id=channel_id,
                    until=until,
                    created_by=1,
                    reason="maintenance",
                )
            )
    for project_id in (1, None):
        async with transaction(engine) as conn:
            await _begin(conn, begun, settings)
            got = await channels.channels_with_overrides(conn, 1, project_id, box)
            live = await mutes.live_mutes(conn, 1, project_id, None, now)
        async with engine.connect() as conn:  # autocommit reads: SQLAlchemy's statements
            expected = await channels.channels_with_overrides(conn, 1, project_id, box)
            expected_live = await mutes.live_mutes(conn, 1, project_id, None, now)
        assert got == expected and [c.id for c, _ in got] == [first, overridden]
        assert (got[1][1] is not None) == (project_id is not None)
        assert live == expected_live and [m.channel_id for m in live] == [None]


@pytest.mark.parametrize("begun", BEGUN)
async def test_errors_come_as_sqlalchemys_either_way(
    engine: AsyncEngine, settings: Settings, begun: bool
) -> None:
    """A statement that breaks a foreign key raises SQLAlchemy's IntegrityError either way,
    so the API answers it as before."""
    with pytest.raises(sa.exc.IntegrityError):
        async with transaction(engine) as conn:
            await _begin(conn, begun, settings)
            await inline_sql.insert_event_with_deliveries(conn, _event(), [_row(10**6, "k")])
