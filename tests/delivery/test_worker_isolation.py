"""Per-channel slots: a dead endpoint with a backlog cannot take every slot of a worker."""

from __future__ import annotations

import asyncio
import time

import httpx
from aiohttp import web

from conftest import seed, start_server, webhook_channel
from loadbell.delivery.wakeup import Wakeup
from loadbell.delivery.worker import Worker
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.queue import queue_for
from loadbell.testing import RecordingReceiver
from loadbell.testing.receiver import Received

SLOTS = 6  # attempts in flight per worker
PER_CHANNEL = 2


async def _start_runs(api: httpx.AsyncClient, count: int) -> None:
    for _ in range(count):
        run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "iso"})).json()
        r = await api.patch(f"/runs/{run['id']}", json={"status": 2})
        assert r.status_code == 200, r.text


async def test_dead_channel_backlog_leaves_slots_for_others(settings: Settings) -> None:
    """When one claim returns more of a dead channel's backlog than its per-channel cap, the
    worker sends only the cap and gives the rest back, so a live channel's newer delivery
    still goes out at once."""
    settings = settings.model_copy(
        update={"worker_concurrency": SLOTS, "per_channel_concurrency": PER_CHANNEL}
    )
    release = asyncio.Event()

    async def hang(_: Received) -> web.Response:
        await release.wait()
        return web.Response(text="ok")

    token = await seed(settings)
    server, serving, url = await start_server(settings, run_worker=False)
    dead, live = RecordingReceiver(handler=hang), RecordingReceiver()
    await dead.start()
    await live.start()
    engine = create_engine(settings)
    stop = asyncio.Event()
    running: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}
        ) as api:
            # The dead channel's backlog is older, so a claim of SLOTS rows takes only it.
            dead_hook = webhook_channel(f"{dead.url}/a", name="A", events=["test.started"])
            assert (await api.post("/channels", json=dead_hook)).status_code == 201
            await _start_runs(api, SLOTS)
            live_hook = webhook_channel(f"{live.url}/b", name="B", events=["test.started"])
            assert (await api.post("/channels", json=live_hook)).status_code == 201
            await _start_runs(api, 1)

        box = SecretBox.from_settings(settings.secret_key, settings.secret_key_file)
        worker = Worker(queue_for(settings), box, settings, Wakeup())
        started = time.monotonic()
        running = asyncio.create_task(worker.run(stop))
        await live.wait_for(1, timeout=8)
        waited = time.monotonic() - started
        assert waited < 3, f"the live channel waited {waited:.1f} s behind the dead one"
        assert len(dead.requests) == PER_CHANNEL, "the dead channel got only its slots"
    finally:
        release.set()  # before stopping: aiohttp waits for running handlers
        stop.set()
        if running is not None:
            await running
        await dead.stop()
        await live.stop()
        await engine.dispose()
        server.should_exit = True
        await serving
