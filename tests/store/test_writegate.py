"""SQLite writers of one process queue on the write gate instead of SQLite's busy handler."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.settings import Settings
from loadbell.store import migrate
from loadbell.store.db import create_engine, reader
from loadbell.store.tables import organizations


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncEngine:
    engine = create_engine(Settings(database_url=f"sqlite:///{tmp_path / 'gate.db'}"))
    await migrate.upgrade(engine)
    yield engine  # type: ignore[misc]
    await engine.dispose()


async def _write(engine: AsyncEngine, name: str, hold: float, log: list[str]) -> None:
    async with engine.begin() as conn:
        log.append(f"begin {name}")
        await conn.execute(sa.insert(organizations).values(name=name))
        await asyncio.sleep(hold)
        log.append(f"end {name}")  # the last step inside the transaction


async def _open_connections(engine: AsyncEngine, count: int) -> None:
    """Fill the pool, so that no writer of a test waits for a new connection."""
    conns = [await engine.connect() for _ in range(count)]
    for conn in conns:
        await conn.close()


async def test_writers_take_turns_in_arrival_order(engine: AsyncEngine) -> None:
    """Five concurrent write transactions run one after another, first come first served."""
    await _open_connections(engine, 5)  # arrival at the gate, not at connect, sets the order
    log: list[str] = []
    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(_write(engine, f"w{i}", 0.02, log)))
        await asyncio.sleep(0.005)
    await asyncio.gather(*tasks)
    assert log == [f"{step} w{i}" for i in range(5) for step in ("begin", "end")]


async def test_waiting_writer_starts_as_soon_as_the_first_commits(engine: AsyncEngine) -> None:
    """A writer queued behind a 300 ms transaction starts right after it, not at the next
    poll of SQLite's busy handler (which sleeps up to 100 ms at a time)."""
    log: list[str] = []
    first = asyncio.create_task(_write(engine, "first", 0.3, log))
    await asyncio.sleep(0.05)
    waited = time.perf_counter()
    await _write(engine, "second", 0.0, log)
    waited = time.perf_counter() - waited
    await first
    assert log == ["begin first", "end first", "begin second", "end second"]
    assert waited < 0.3 + 0.05


async def test_failed_transaction_lets_the_next_writer_in(engine: AsyncEngine) -> None:
    """A write transaction that raises rolls back and frees the gate."""
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await conn.execute(sa.insert(organizations).values(name="doomed"))
            raise RuntimeError("boom")
    async with asyncio.timeout(2):
        async with engine.begin() as conn:
            await conn.execute(sa.insert(organizations).values(name="next"))
    async with engine.connect() as conn:
        names = (await conn.execute(sa.select(organizations.c.name))).scalars().all()
    assert names == ["next"]


async def test_readers_do_not_wait_for_a_writer(engine: AsyncEngine) -> None:
    """A read-only connection answers while a write transaction is open."""
    log: list[str] = []
    writer = asyncio.create_task(_write(engine, "slow", 0.5, log))
    await asyncio.sleep(0.05)
    async with asyncio.timeout(0.3), reader(engine).connect() as conn:
        await conn.execute(sa.select(sa.func.count()).select_from(organizations))
    assert log == ["begin slow"]
    await writer
