"""Results are never dropped: a write that fails is kept and written again."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conftest import Server, webhook_channel
from loadbell.store.db import create_engine
from loadbell.store.queue import QueueUnavailable
from loadbell.store.queue.postgres import PostgresQueue
from loadbell.store.queue.sqlite import SQLiteQueue
from loadbell.store.tables import deliveries, delivery_attempts
from loadbell.testing import RecordingReceiver


@pytest.mark.parametrize("error", [QueueUnavailable("gone"), RuntimeError("a bug")])
async def test_failed_result_writes_are_retried_not_lost(
    app_server: Server,
    api: httpx.AsyncClient,
    receiver: RecordingReceiver,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    """The first two result writes fail (the database went away, or a bug); the results wait
    in memory and are written once the writes work, one attempt row per attempt."""
    failures = 2
    for cls in (SQLiteQueue, PostgresQueue):
        real = cls.record

        async def record(self: Any, *args: Any, _real: Any = real, **kwargs: Any) -> bool:
            nonlocal failures
            if failures:
                failures -= 1
                raise error
            result: bool = await _real(self, *args, **kwargs)
            return result

        monkeypatch.setattr(cls, "record", record)
    hook = webhook_channel(f"{receiver.url}/hook", events=["test.started"])
    assert (await api.post("/channels", json=hook)).status_code == 201
    for _ in range(3):
        run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "r"})).json()
        assert (await api.patch(f"/runs/{run['id']}", json={"status": 2})).status_code == 200
    await receiver.wait_for(3)

    engine = create_engine(app_server.settings)
    deadline = time.monotonic() + 30
    try:
        while True:  # results are written after the attempts: wait for them
            async with engine.connect() as conn:
                states = (await conn.execute(sa.select(deliveries.c.status))).scalars().all()
                logged = (await conn.execute(sa.select(delivery_attempts))).all()
            if set(states) == {"succeeded"} and len(logged) == 3:
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
    assert failures == 0
    assert sorted(states) == ["succeeded"] * 3
    assert len(logged) == 3 and len(receiver.requests) == 3
