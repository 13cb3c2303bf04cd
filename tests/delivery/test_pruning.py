"""The worker's pruning side task (delivery/pruning.py), in ``serve`` and ``loadbell worker``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from aged_rows import add_delivery, add_event, add_report, ago, ids, make_channel, make_run
from conftest import SpawnLoadbell, seed, start_server, worker_env
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import deliveries, run_reports, workers


async def _aged(engine: AsyncEngine) -> tuple[int, int]:
    """An old finished delivery with an old report, and a recent one; returns
    (recent delivery, recent report)."""
    async with engine.begin() as conn:
        run_id = await make_run(conn)
        channel = await make_channel(conn)
        old = await add_event(conn, run_id, ago(40))
        await add_delivery(conn, old, channel, status="succeeded", at=ago(40))
        await add_report(conn, run_id, ago(40))
        new = await add_event(conn, run_id, ago(1))
        recent = await add_delivery(conn, new, channel, status="failed", at=ago(1))
        report = await add_report(conn, run_id, ago(1))
    return recent, report


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.05)


async def test_the_worker_of_serve_prunes_old_rows_and_logs_the_counts(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """With a short prune interval, the worker removes what is older than the retention by
    itself, keeps the rest, and logs one line with the counts."""
    caplog.set_level(logging.INFO, logger="loadbell.worker")
    settings = settings.model_copy(update={"retention_days": 7, "prune_interval_seconds": 0.1})
    await seed(settings)
    engine = create_engine(settings)
    try:
        recent, report = await _aged(engine)

        async def pruned() -> bool:
            return await ids(engine, deliveries) == {recent}

        server, task, _ = await start_server(settings)
        try:
            await _until(pruned)
            await _until(lambda: _has(caplog, "pruned rows older than 7 days"))
        finally:
            server.should_exit = True
            await task
        assert await ids(engine, run_reports) == {report}
    finally:
        await engine.dispose()
    lines = [r.getMessage() for r in caplog.records if "pruned rows" in r.getMessage()]
    assert lines == [
        "pruned rows older than 7 days: deliveries 1, delivery_attempts 1, events 1, run_reports 1"
    ]  # later passes removed nothing and said nothing


async def _has(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)


async def test_retention_zero_keeps_everything(settings: Settings) -> None:
    """With LOADBELL_RETENTION_DAYS=0 the worker runs no pruning task and old rows stay."""
    settings = settings.model_copy(update={"retention_days": 0, "prune_interval_seconds": 0.05})
    await seed(settings)
    engine = create_engine(settings)
    try:
        await _aged(engine)
        before = await ids(engine, deliveries)

        async def joined() -> bool:
            async with engine.connect() as conn:
                return bool(
                    (
                        await conn.execute(sa.select(sa.func.count()).select_from(workers))
                    ).scalar_one()
                )

        server, task, _ = await start_server(settings)
        try:
            await _until(joined)
            names = {t.get_name() for t in asyncio.all_tasks()}
            assert "heartbeat" in names  # the worker's side tasks are running ...
            assert "pruning" not in names  # ... and pruning is not one of them
            await asyncio.sleep(0.5)  # ten intervals: a pass would have come
        finally:
            server.should_exit = True
            await task
        assert await ids(engine, deliveries) == before and len(before) == 2
    finally:
        await engine.dispose()


@pytest.mark.slow
async def test_a_worker_process_prunes(settings: Settings, spawn_loadbell: SpawnLoadbell) -> None:
    """`loadbell worker` prunes too, and says so on stderr."""
    await seed(settings)
    engine = create_engine(settings)
    try:
        recent, _ = await _aged(engine)
        env = worker_env(
            settings, LOADBELL_RETENTION_DAYS="7", LOADBELL_PRUNE_INTERVAL_SECONDS="0.1"
        )
        proc = await spawn_loadbell("worker", env=env)
        line = await proc.wait_for_line("pruned rows older than 7 days", timeout=60)
        assert "deliveries 1," in line
        assert await ids(engine, deliveries) == {recent}
        assert await proc.stop() == 0
    finally:
        await engine.dispose()
