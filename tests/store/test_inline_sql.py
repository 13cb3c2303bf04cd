"""The run update's statements on SQLite's own connection (store/inline_sql.py) do what
SQLAlchemy's do on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from bench.backlog import create_load_test, create_runs, create_webhook_channel
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import seed
from loadbell.domain.events import EventType
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store import inline_sql, tables
from loadbell.store.db import create_engine, transaction
from loadbell.store.outbox import stage_event

URL = "http://127.0.0.1:9/"  # never contacted


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    await seed(settings)
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


def _row(event_id: int, channel_id: int, key: str, status: str = "pending") -> dict[str, object]:
    return {
        "uuid": str(uuid.uuid4()),
        "event_id": event_id,
        "channel_id": channel_id,
        "target": None,
        "order_key": key,
        "status": status,
        "series": 1,
        "attempts": 0,
        "next_attempt_at": 1.5,
        "lease_until": None,
        "lease_owner": None,
    }


async def test_inline_statements_write_and_read_as_sqlalchemy_does(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Status history, delivery rows (ids in order) and pending order keys, in the caller's
    transaction; on SQLite through the sqlite3 connection, elsewhere through SQLAlchemy."""
    box = SecretBox(settings.secret_key)
    async with transaction(engine) as conn:
        channel_id = await create_webhook_channel(conn, box, URL, ["test.started"])
        (run_id,) = await create_runs(conn, await create_load_test(conn), 1)
        event_id, _ = await stage_event(
            conn,
            event_type=EventType.TEST_STARTED,
            organization_id=1,
            context={},
            plan=[],
            run_id=run_id,
        )
    odd = f"{channel_id}:{run_id}:#général \"quoted\" 'x'"  # a target may hold anything
    async with transaction(engine) as conn:
        assert (inline_sql.sqlite3_of(conn) is not None) == settings.is_sqlite
        await inline_sql.add_status_change(conn, run_id, 2)
        ids = await inline_sql.insert_deliveries(
            conn,
            [
                _row(event_id, channel_id, "a"),
                _row(event_id, channel_id, odd),
                _row(event_id, channel_id, "done", status="succeeded"),
            ],
        )
        assert ids == sorted(ids) and len(set(ids)) == 3
        waiting = await inline_sql.pending_order_keys(conn, ["a", odd, "done", "none"])
        assert waiting == {"a", odd}
        assert await inline_sql.pending_order_keys(conn, ["b"]) == set()

    async with engine.connect() as conn:
        history = (
            await conn.execute(
                sa.select(tables.run_status_changes.c.status, tables.run_status_changes.c.at)
                .where(tables.run_status_changes.c.run_id == run_id)
                .order_by(tables.run_status_changes.c.id)
            )
        ).all()
        rows = (
            await conn.execute(sa.select(tables.deliveries).where(tables.deliveries.c.id.in_(ids)))
        ).all()
    assert [h.status for h in history] == [-2, 2]  # Created (create_runs), then Running
    assert all(h.at is not None for h in history)
    by_id = {r.id: r for r in rows}
    assert [by_id[i].order_key for i in ids] == ["a", odd, "done"]
    assert by_id[ids[0]].next_attempt_at == 1.5 and by_id[ids[0]].created_at is not None


async def test_a_failed_transaction_leaves_no_inline_rows(engine: AsyncEngine) -> None:
    """The inline statements belong to the caller's transaction: a rollback removes them."""
    async with transaction(engine) as conn:
        (run_id,) = await create_runs(conn, await create_load_test(conn), 1)
    with pytest.raises(RuntimeError):
        async with transaction(engine) as conn:
            await inline_sql.add_status_change(conn, run_id, 2)
            raise RuntimeError("the handler failed")
    async with engine.connect() as conn:
        count = (
            await conn.execute(
                sa.select(sa.func.count()).where(tables.run_status_changes.c.run_id == run_id)
            )
        ).scalar()
    assert count == 1  # Created only
