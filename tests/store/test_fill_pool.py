"""The API's pool on PostgreSQL: opened at ``serve``'s start, and kept through bursts
(store/db.py: ``fill_pool``, ``pool_sizes``; D73)."""

from __future__ import annotations

import contextlib

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import start_server
from loadbell.app import create_app
from loadbell.settings import Settings
from loadbell.store.db import POSTGRES_OPENED_AT_START, POSTGRES_POOL, fill_pool


async def test_fill_opens_postgres_connections_and_leaves_sqlite_alone(
    settings: Settings, engine: AsyncEngine
) -> None:
    pool = engine.sync_engine.pool
    opened = await fill_pool(engine)
    if settings.is_sqlite:
        assert opened == 0
        return
    assert opened == POSTGRES_OPENED_AT_START == 10
    assert pool.checkedin() == opened  # type: ignore[attr-defined]  # QueuePool's
    async with engine.connect() as conn:
        others = await conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        assert others.scalar_one() >= opened - 1  # this one came from the pool too


async def test_a_burst_keeps_its_postgres_connections(
    settings: Settings, engine: AsyncEngine
) -> None:
    """With 10 + 10 overflow, SQLAlchemy closed every connection past 10 as it came back,
    and the next burst opened server processes anew; the pool keeps them now."""
    if settings.is_sqlite:
        return  # its pool has room for every admitted request (pool_sizes)
    burst = 15
    async with contextlib.AsyncExitStack() as held:
        for _ in range(burst):
            conn = await held.enter_async_context(engine.connect())
            await conn.execute(sa.text("SELECT 1"))
    assert engine.sync_engine.pool.checkedin() == burst  # type: ignore[attr-defined]
    assert engine.sync_engine.pool.size() == POSTGRES_POOL  # type: ignore[attr-defined]


async def test_serve_fills_the_pool_before_it_answers(settings: Settings) -> None:
    """The app ``serve`` builds (``fill=True``) has its connections open once it is up;
    the one tests build by default does not open them."""
    for fill, expected in ((True, POSTGRES_OPENED_AT_START), (False, 0)):
        app = create_app(settings, run_worker=False, fill=fill)
        server, task, _ = await start_server(settings, app=app)
        try:
            pool = app.state.loadbell.engine.sync_engine.pool
            # Open connections, idle or lent out (the start's own reads, the backlog count).
            held = pool.checkedin() + pool.checkedout()
            if settings.is_sqlite:
                assert held <= 2
            else:
                assert expected <= held <= expected + 2
        finally:
            server.should_exit = True
            await task
