"""Bulk redelivery (store/redelivery.py) on a large failed backlog, on both databases."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from bench.backlog import stage_backlog
from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store import redelivery, tables
from loadbell.store.tables import DELIVERY_FAILED, DELIVERY_PENDING

# More than one statement may bind: SQLite's default limit of host parameters is 32,766,
# asyncpg's 32,767 arguments.
MANY = 33_000


async def test_restarting_more_failures_than_a_statement_may_bind(
    settings: Settings, engine: AsyncEngine
) -> None:
    box = SecretBox.from_settings(settings.secret_key, settings.secret_key_file)
    await stage_backlog(engine, box, "http://127.0.0.1:9/x", MANY, settings.base_url)
    d = tables.deliveries
    async with engine.begin() as conn:
        await conn.execute(sa.update(d).values(status=DELIVERY_FAILED))
        organization_id = (await conn.execute(sa.select(d.c.organization_id).limit(1))).scalar()

    turns = 0

    async def count_turns() -> None:  # runs only while the restart yields the loop
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.create_task(count_turns())
    try:
        async with engine.begin() as conn:
            failed = redelivery.FailedFilter(organization_id=organization_id)
            ids = await redelivery.restart_failed(conn, failed)
    finally:
        counter.cancel()
    assert len(ids) == MANY == len(set(ids))
    assert ids == sorted(ids)
    # The statements come in chunks, and the loop runs between them.
    assert turns >= MANY // redelivery.CHUNK
    async with engine.connect() as conn:
        states = (
            await conn.execute(
                sa.select(d.c.status, d.c.series, sa.func.count()).group_by(d.c.status, d.c.series)
            )
        ).all()
    assert [tuple(s) for s in states] == [(DELIVERY_PENDING, 2, MANY)]
