"""Scale-out on PostgreSQL: two ``loadbell worker`` processes drain one backlog together,
and every delivery goes out exactly once, in order per channel and run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web

from conftest import SpawnLoadbell, seed, start_server, webhook_channel, worker_env
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import deliveries, delivery_attempts
from loadbell.testing import RecordingReceiver
from loadbell.testing.receiver import Received

RUNS = 38
CHANNELS = ("a", "b", "c", "d")
EVENTS = ["test.started", "test.finished"]
BACKLOG = RUNS * len(CHANNELS) * len(EVENTS)  # 304 deliveries
SLOTS = 8  # attempts in flight per worker (LOADBELL_WORKER_CONCURRENCY)


class TwoWorkerGate:
    """A receiver handler that holds every request until more than ``SLOTS`` are in flight at
    once, which only two workers working at the same time can cause."""

    def __init__(self) -> None:
        self.inflight = 0
        self.both_busy = asyncio.Event()

    async def __call__(self, _: Received) -> web.Response:
        self.inflight += 1
        try:
            if self.inflight > SLOTS:
                self.both_busy.set()
            # Bounded below the 10 s attempt timeout, so a slow start fails the assertions
            # below rather than turning into retries.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.both_busy.wait(), 8)
            await asyncio.sleep(0.02)
        finally:
            self.inflight -= 1
        return web.Response(text="ok")


async def _stage_backlog(api: httpx.AsyncClient) -> None:
    """Each run starts and finishes: two events, each to every channel."""
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with gate:
            r = await api.post("/runs", json={"project_id": 1, "load_test_name": f"lt{i % 5}"})
            assert r.status_code == 201, r.text
            for status in (2, 3):
                r = await api.patch(f"/runs/{r.json()['id']}", json={"status": status})
                assert r.status_code == 200, r.text

    await asyncio.gather(*(one(i) for i in range(RUNS)))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_workers_drain_backlog_exactly_once(
    settings: Settings, spawn_loadbell: SpawnLoadbell
) -> None:
    """Two worker processes share a backlog of 304 deliveries: both have attempts in flight at
    once, each delivery arrives exactly once, all end succeeded after one attempt, and every
    channel sees each run's events in order."""
    token = await seed(settings)
    server, serving, url = await start_server(settings, run_worker=False)
    engine = create_engine(settings)
    gate = TwoWorkerGate()
    rx = RecordingReceiver(handler=gate)
    await rx.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            for name in CHANNELS:
                r = await api.post("/channels", json=webhook_channel(f"{rx.url}/{name}"))
                assert r.status_code == 201, r.text
            await _stage_backlog(api)
        async with engine.connect() as conn:
            staged = {
                r.uuid: r.id
                for r in await conn.execute(sa.select(deliveries.c.uuid, deliveries.c.id))
            }
        assert len(staged) == BACKLOG

        env = worker_env(settings, LOADBELL_WORKER_CONCURRENCY=str(SLOTS))
        started = time.monotonic()
        workers = [await spawn_loadbell("worker", env=env) for _ in range(2)]
        await rx.wait_for(BACKLOG, timeout=40)
        deadline = time.monotonic() + 10
        while True:
            async with engine.connect() as conn:
                pending = (
                    await conn.execute(
                        sa.select(sa.func.count())
                        .select_from(deliveries)
                        .where(deliveries.c.status != "succeeded")
                    )
                ).scalar_one()
            if pending == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        drained = time.monotonic() - started
        for w in workers:
            assert await w.stop() == 0, w.output()

        assert gate.both_busy.is_set(), "the two workers never had attempts in flight at once"
        assert pending == 0
        sent = Counter(r.header("X-LoadImpact-ID") for r in rx.requests)
        assert set(sent) == set(staged), "every delivery arrived, and nothing else"
        assert max(sent.values()) == 1, "no delivery was sent twice"

        async with engine.connect() as conn:
            attempts = (await conn.execute(sa.select(delivery_attempts))).all()
        assert len(attempts) == BACKLOG
        assert {(a.number, a.outcome) for a in attempts} == {(1, "delivered")}
        by_worker = Counter(a.worker.split(":")[1] for a in attempts)
        assert set(by_worker) == {str(w.pid) for w in workers}, by_worker
        print(f"drained {BACKLOG} in {drained:.2f} s; attempts per worker: {dict(by_worker)}")

        seen: defaultdict[tuple[str, int], list[str]] = defaultdict(list)
        for got in rx.requests:
            body = got.json()
            seen[(got.path, body["load_test_run_id"])].append(body["event"])
        assert len(seen) == RUNS * len(CHANNELS)
        assert all(events == EVENTS for events in seen.values()), seen
    finally:
        await rx.stop()
        await engine.dispose()
        server.should_exit = True
        await serving
