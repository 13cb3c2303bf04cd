"""PostgreSQL connections of the pool: one round trip to check one out, none to begin or
end a read (store/db.py: ``_ping``, ``reader``)."""

from __future__ import annotations

import asyncpg
import pytest
import sqlalchemy as sa

from loadbell.settings import Settings
from loadbell.store.db import create_engine, reader


@pytest.fixture
def pg_settings(settings: Settings) -> Settings:
    if settings.is_sqlite:
        pytest.skip("PostgreSQL connections only")
    return settings


async def test_a_connection_the_server_ended_is_replaced_at_checkout(
    pg_settings: Settings,
) -> None:
    engine = create_engine(pg_settings)
    try:
        async with reader(engine).connect() as conn:
            ended = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
        admin = await asyncpg.connect(pg_settings.database_url.replace("+asyncpg", ""))
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", ended)
        finally:
            await admin.close()
        for engine_of in (reader, lambda e: e):
            async with engine_of(engine).connect() as conn:
                pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
                assert pid != ended
    finally:
        await engine.dispose()


async def test_reads_run_in_autocommit_and_writes_in_a_transaction(
    pg_settings: Settings,
) -> None:
    """A reader's statements are each their own transaction (no BEGIN, no ROLLBACK round
    trips); a writer's share one."""
    engine = create_engine(pg_settings)
    xact = sa.text("SELECT pg_current_xact_id()::text")
    try:
        async with reader(engine).connect() as conn:
            first = (await conn.execute(xact)).scalar_one()
            assert (await conn.execute(xact)).scalar_one() != first
        async with engine.begin() as conn:
            first = (await conn.execute(xact)).scalar_one()
            assert (await conn.execute(xact)).scalar_one() == first
    finally:
        await engine.dispose()
