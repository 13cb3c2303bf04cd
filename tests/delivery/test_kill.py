"""Crash safety: a worker killed mid-delivery loses nothing; its lease runs out and another
worker re-sends the same delivery."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime

import httpx
import sqlalchemy as sa
from aiohttp import web

from conftest import SpawnLoadbell, seed, start_server, webhook_channel, worker_env
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.queue import Claimed, Completion, queue_for
from loadbell.store.tables import deliveries, delivery_attempts, workers
from loadbell.testing import RecordingReceiver
from loadbell.testing.receiver import Received
from loadbell.values import Outcome, Verdict

LEASE = 30.0  # seconds; the worker clamps its attempt timeout to 0.8 x this


async def test_killed_worker_delivery_is_resent_with_same_id(
    settings: Settings, spawn_loadbell: SpawnLoadbell
) -> None:
    """A delivery whose worker is SIGKILLed mid-request is re-sent by another worker once the
    dead worker's liveness has lapsed (long before its lease ends), with the same
    X-LoadImpact-ID, and ends succeeded after one logged attempt."""
    release = asyncio.Event()  # set at the end so the hung handler can finish

    async def hang_first(_: Received) -> web.Response:
        if len(rx.requests) == 1:
            await release.wait()
        return web.Response(text="ok")

    rx = RecordingReceiver(handler=hang_first)
    token = await seed(settings)
    server, serving, url = await start_server(settings, run_worker=False)
    env = worker_env(settings, LOADBELL_LEASE_SECONDS=str(LEASE))
    engine = create_engine(settings)
    await rx.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}
        ) as api:
            r = await api.post(
                "/channels",
                json=webhook_channel(f"{rx.url}/hook", events=["test.started"]),
            )
            assert r.status_code == 201, r.text
            run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "kill"})).json()
            r = await api.patch(f"/runs/{run['id']}", json={"status": 2})
            assert r.status_code == 200, r.text

        first_worker = await spawn_loadbell("worker", env=env)
        first = (await rx.wait_for(1, timeout=20))[0]
        first_worker.proc.send_signal(signal.SIGKILL)
        assert await first_worker.finish() == -signal.SIGKILL

        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(deliveries))).one()
            alive_until = (await conn.execute(sa.select(workers.c.alive_until))).scalar_one()
        assert (row.status, row.attempts) == ("pending", 0), "the killed attempt is unlogged"
        assert row.lease_until > first.at

        second_worker = await spawn_loadbell("worker", env=env)
        second = (await rx.wait_for(2, timeout=20))[1]
        assert second.header("X-LoadImpact-ID") == first.header("X-LoadImpact-ID") == row.uuid
        assert second.at >= alive_until, "nobody re-sends while the dead worker seems alive"
        assert second.at < row.lease_until, "its lapsed liveness released it before its lease"

        deadline = time.monotonic() + 10
        while True:
            async with engine.connect() as conn:
                row = (await conn.execute(sa.select(deliveries))).one()
                attempts = (await conn.execute(sa.select(delivery_attempts))).all()
            if row.status != "pending" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert row.status == "succeeded"
        assert [(a.number, a.outcome, a.response_status) for a in attempts] == [
            (1, "delivered", 200)
        ]
        assert attempts[0].worker.split(":")[1] == str(second_worker.pid)
        assert len(rx.requests) == 2
    finally:
        release.set()  # before stopping: aiohttp waits for running handlers
        await rx.stop()
        await engine.dispose()
        server.should_exit = True
        await serving


def _result(item: Claimed, verdict: Verdict, status: str) -> Completion:
    """What a worker reports for its attempt on ``item``."""
    return Completion(
        delivery_id=item.id,
        series=item.series,
        attempt_number=item.attempts + 1,
        started_at=datetime.now(UTC),
        outcome=Outcome(verdict, status_code=200 if verdict is Verdict.DELIVERED else None),
        status=status,
        next_attempt_at=time.time(),  # due at once: only the lease can hold it back
        lease_until=item.lease_until,
        channel_id=item.channel_id,
    )


async def test_result_after_lost_lease_cannot_undo_new_claim(settings: Settings) -> None:
    """A worker that stalls past its lease and reports late neither frees the new owner's
    lease (so a third worker cannot send too) nor overwrites the new owner's result; the
    attempt log keeps one row per attempt number, the one whose claim held."""
    token = await seed(settings)
    server, serving, url = await start_server(settings, run_worker=False)
    engine = create_engine(settings)
    queue = queue_for(settings)
    await queue.open()
    try:
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}
        ) as api:
            r = await api.post("/channels", json=webhook_channel("http://127.0.0.1:9/hook"))
            assert r.status_code == 201, r.text
            run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "t"})).json()
            r = await api.patch(f"/runs/{run['id']}", json={"status": 2})
            assert r.status_code == 200, r.text
        stalled = (await queue.claim(owner="a", limit=5, lease_seconds=0.2)).deliveries
        assert len(stalled) == 1
        await asyncio.sleep(0.3)
        taken = (await queue.claim(owner="b", limit=5, lease_seconds=30)).deliveries
        assert [d.id for d in taken] == [stalled[0].id]

        await queue.record([_result(stalled[0], Verdict.RETRY, "pending")], [], "a")
        third = await queue.claim(owner="c", limit=5, lease_seconds=30)
        assert third.deliveries == [], "b's lease still holds"

        await queue.record([_result(taken[0], Verdict.DELIVERED, "succeeded")], [], "b")
        # a's late report again (a retried write): it changes nothing.
        await queue.record([_result(stalled[0], Verdict.RETRY, "pending")], [], "a")
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(deliveries))).one()
            log = (await conn.execute(sa.select(delivery_attempts))).all()
        assert (row.status, row.attempts, row.lease_owner) == ("succeeded", 1, None)
        assert [(a.number, a.worker, a.outcome) for a in log] == [(1, "b", "delivered")]
    finally:
        await queue.close()
        await engine.dispose()
        server.should_exit = True
        await serving
