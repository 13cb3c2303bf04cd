"""The handoff: `loadbell serve` gives a run update's deliveries to its own worker straight
from the API's transaction, already leased, instead of having the worker claim them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web

from conftest import SpawnLoadbell, free_port, seed, start_server, webhook_channel, worker_env
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.queue import ClaimBatch
from loadbell.store.tables import deliveries, delivery_attempts, workers
from loadbell.testing import RecordingReceiver
from loadbell.testing.receiver import Received

LEASE = 30.0  # seconds, for the kill test


def _claimed(claims_made: list[ClaimBatch]) -> list[int]:
    """The ids of every delivery a worker of this process claimed (handed-off ones are
    not)."""
    return [d.id for batch in claims_made for d in batch.deliveries]


async def _start_runs(api: httpx.AsyncClient, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "h"})).json()
        r = await api.patch(f"/runs/{run['id']}", json={"status": 2})
        assert r.status_code == 200, r.text
        ids.append(run["id"])
    return ids


async def test_run_events_go_out_without_a_claim(
    api: httpx.AsyncClient, receiver: RecordingReceiver, claims_made: list[ClaimBatch]
) -> None:
    """Each run update's delivery reaches the receiver with no claim transaction at all."""
    hook = webhook_channel(f"{receiver.url}/hook", events=["test.started"])
    assert (await api.post("/channels", json=hook)).status_code == 201
    runs = await _start_runs(api, 5)
    got = await receiver.wait_for(5)
    assert sorted(r.json()["load_test_run_id"] for r in got) == sorted(runs)
    assert _claimed(claims_made) == []


async def test_a_later_event_waits_for_the_earlier_one(
    api: httpx.AsyncClient, receiver: RecordingReceiver, claims_made: list[ClaimBatch]
) -> None:
    """test.finished, staged while test.started of the same run is still in flight, is not
    handed off: it is claimed once test.started is done, and arrives after it."""

    async def slow_started(r: Received) -> web.Response:
        if r.json()["event"] == "test.started":
            await asyncio.sleep(0.5)
        return web.Response(text="ok")

    receiver.handler = slow_started
    hook = webhook_channel(f"{receiver.url}/hook", events=["test.started", "test.finished"])
    assert (await api.post("/channels", json=hook)).status_code == 201
    [run] = await _start_runs(api, 1)
    assert (await api.patch(f"/runs/{run}", json={"status": 3})).status_code == 200
    started, finished = await receiver.wait_for(2)
    assert [started.json()["event"], finished.json()["event"]] == [
        "test.started",
        "test.finished",
    ]
    assert finished.at - started.at >= 0.45, "sent only after test.started was answered"
    items = (await api.get("/deliveries", params={"run_id": run})).json()["items"]
    by_event = {d["event_type"]: d["id"] for d in items}
    assert _claimed(claims_made) == [by_event["test.finished"]]


@pytest.fixture
def small_worker(settings: Settings) -> Settings:
    """One attempt in flight at a time: the worker holds at most 4 deliveries."""
    return settings.model_copy(update={"worker_concurrency": 1, "per_channel_concurrency": 1})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_full_worker_leaves_the_rest_to_claims(
    small_worker: Settings, receiver: RecordingReceiver, claims_made: list[ClaimBatch]
) -> None:
    """Past what the worker may hold, new deliveries are written unleased and claimed
    later; every one is sent exactly once."""

    # The receiver answers nothing until every run has started (at most 8 s, under the
    # attempt's timeout), so the worker is full while they are staged however slowly the
    # machine runs them; a fixed delay let a slow machine drain it between two runs.
    started = asyncio.Event()

    async def held(_: Received) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(started.wait(), 8)
        return web.Response(text="ok")

    receiver.handler = held
    token = await seed(small_worker)
    server, serving, url = await start_server(small_worker)
    try:
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}
        ) as api:
            hook = webhook_channel(f"{receiver.url}/hook", events=["test.started"])
            assert (await api.post("/channels", json=hook)).status_code == 201
            runs = await _start_runs(api, 10)
            started.set()
            got = await receiver.wait_for(10, timeout=60)
            await asyncio.sleep(0.3)  # a duplicate would arrive meanwhile
    finally:
        server.should_exit = True
        await serving
    assert sorted(r.json()["load_test_run_id"] for r in got) == sorted(runs)
    assert len(receiver.requests) == 10
    assert len({r.header("X-LoadImpact-ID") for r in got}) == 10
    assert 0 < len(_claimed(claims_made)) < 10, "some were handed off, the rest claimed"


async def _healthy(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{url} never answered"
            await asyncio.sleep(0.1)


async def test_killed_serve_handed_delivery_is_resent_with_same_id(
    settings: Settings, spawn_loadbell: SpawnLoadbell
) -> None:
    """A delivery handed off inside `loadbell serve`, whose process is SIGKILLed while the
    request is in flight, is sent again by a `loadbell worker` once serve's liveness has
    lapsed, long before the lease runs out."""
    release = asyncio.Event()

    async def hang_first(_: Received) -> web.Response:
        if len(rx.requests) == 1:
            await release.wait()
        return web.Response(text="ok")

    rx = RecordingReceiver(handler=hang_first)
    token = await seed(settings)
    env = worker_env(settings, LOADBELL_LEASE_SECONDS=str(LEASE))
    port = free_port()
    engine = create_engine(settings)
    await rx.start()
    try:
        # The handoff is the inline worker's (serve's own loop), not the worker process's.
        serve = await spawn_loadbell("serve", "--port", str(port), "--worker", "inline", env=env)
        await _healthy(f"http://127.0.0.1:{port}/healthz")
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
        ) as api:
            hook = webhook_channel(f"{rx.url}/hook", events=["test.started"])
            assert (await api.post("/channels", json=hook)).status_code == 201
            [run] = await _start_runs(api, 1)
        first = (await rx.wait_for(1, timeout=20))[0]
        serve.proc.send_signal(signal.SIGKILL)
        await serve.finish()

        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(deliveries))).one()
            alive_until = (await conn.execute(sa.select(workers.c.alive_until))).scalar_one()
        assert (row.status, row.attempts) == ("pending", 0)
        assert row.lease_owner is not None and row.lease_owner.split(":")[1] == str(serve.pid)

        await spawn_loadbell("worker", env=env)
        second = (await rx.wait_for(2, timeout=20))[1]
        assert second.header("X-LoadImpact-ID") == first.header("X-LoadImpact-ID") == row.uuid
        assert second.at >= alive_until, "nobody re-sends while serve seems alive"
        assert second.at < row.lease_until, "its lapsed liveness released it before its lease"
        assert second.json()["load_test_run_id"] == run

        deadline = time.monotonic() + 10
        while True:
            async with engine.connect() as conn:
                status = (await conn.execute(sa.select(deliveries.c.status))).scalar_one()
                attempts = (await conn.execute(sa.select(delivery_attempts))).all()
            if status != "pending" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert status == "succeeded"
        assert [(a.number, a.outcome) for a in attempts] == [(1, "delivered")]
    finally:
        release.set()
        await rx.stop()
        await engine.dispose()
