"""SIGTERM during a drain: `loadbell worker` and `loadbell serve` stop claiming, let the
attempts under way finish, write their results, release what they held and exit 0; the
next worker delivers the rest, each delivery once."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import (
    LoadbellProcess,
    SpawnLoadbell,
    free_port,
    seed,
    stage_runs,
    start_server,
    webhook_channel,
    worker_env,
)
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import deliveries, workers
from loadbell.testing import RecordingReceiver
from loadbell.testing.receiver import Received

pytestmark = pytest.mark.slow

RUNS = 30  # each starts and finishes: 60 deliveries, 30 ordered sequences of two
HELD = 4  # requests the receiver holds unanswered when the process gets its SIGTERM
# The attempts under way must outlive however long this machine takes from the SIGTERM to
# the gate's opening: a long attempt timeout, inside a longer lease.
LEASE = 90.0  # seconds (LOADBELL_LEASE_SECONDS)
ATTEMPT_TIMEOUT = 60.0  # seconds (the channel's retry.timeout)


class GatedReceiver:
    """Holds every request until ``gate`` opens, then answers 200."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.held = 0

    async def __call__(self, got: Received) -> web.Response:
        self.held += 1
        try:
            await self.gate.wait()
        finally:
            self.held -= 1
        return web.Response(text="ok")


async def _wait(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.02)


async def _statuses(engine: AsyncEngine) -> dict[str, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(deliveries.c.uuid, deliveries.c.status))
        return {r.uuid: r.status for r in rows}


async def _held_by(engine: AsyncEngine, name: str) -> tuple[int, int]:
    """Deliveries leased to worker ``name``, and its rows in ``workers``."""
    async with engine.connect() as conn:
        leased = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(deliveries.c.lease_owner == name)
            )
        ).scalar_one()
        rows = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(workers).where(workers.c.name == name)
            )
        ).scalar_one()
    return leased, rows


async def _interrupt(proc: LoadbellProcess, gated: GatedReceiver) -> str:
    """SIGTERM ``proc`` while it holds HELD attempts at the receiver; once it says it is
    stopping, let those attempts finish. Returns the stopped worker's name."""
    await _wait(lambda: gated.held >= HELD, f"{HELD} requests held at the receiver")
    proc.proc.send_signal(signal.SIGTERM)
    line = await proc.wait_for_line("stopping:", timeout=60)
    gated.gate.set()
    assert await proc.finish(timeout=120) == 0, proc.output()
    found = re.search(r"worker (\S+) stopping", line)
    assert found, line
    return found.group(1)


@pytest.mark.parametrize("command", ["worker", "serve"])
async def test_sigterm_mid_drain_loses_nothing(
    settings: Settings, spawn_loadbell: SpawnLoadbell, command: str
) -> None:
    """A worker (alone, or inside serve) that gets SIGTERM mid-drain exits 0 with the result
    of every attempt the receiver saw written and nothing leased to it; a second worker then
    delivers the rest, and every delivery reaches the receiver exactly once."""
    token = await seed(settings)
    gated = GatedReceiver()
    rx = RecordingReceiver(handler=gated)
    await rx.start()
    engine = create_engine(settings)
    env = worker_env(settings, LOADBELL_LEASE_SECONDS=str(LEASE))
    server = serving = None
    try:
        if command == "serve":
            port = free_port()
            proc = await spawn_loadbell("serve", "--port", str(port), env=env)
            await proc.wait_for_line("Application startup complete")
            url = f"http://127.0.0.1:{port}"
        else:
            server, serving, url = await start_server(settings, run_worker=False)
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            r = await api.post(
                "/channels",
                json=webhook_channel(f"{rx.url}/hook", retry={"timeout": ATTEMPT_TIMEOUT}),
            )
            assert r.status_code == 201, r.text
            await stage_runs(api, RUNS)
        if command == "worker":  # its lines in JSON, to read its stop from their fields
            proc = await spawn_loadbell("worker", env={**env, "LOADBELL_LOG_FORMAT": "json"})

        name = await _interrupt(proc, gated)
        if command == "worker":
            docs = [json.loads(line) for line in proc.stderr]
            (stopping,) = [d for d in docs if "in_flight" in d]
            assert stopping["worker"] == name and stopping["in_flight"] >= HELD
        statuses = await _statuses(engine)
        assert len(statuses) == RUNS * 2
        seen = {got.header("X-LoadImpact-ID") for got in rx.requests}
        unwritten = {key for key in seen if statuses.get(key or "") != "succeeded"}
        assert not unwritten, f"{len(unwritten)} attempts the receiver answered were not recorded"
        left = [key for key, status in statuses.items() if status == "pending"]
        assert left, "the drain was over before the SIGTERM: nothing was left to test"
        assert await _held_by(engine, name) == (0, 0), "deliveries or liveness row left behind"

        rest = await spawn_loadbell("worker", env=env)
        deadline = time.monotonic() + 120
        while set((await _statuses(engine)).values()) != {"succeeded"}:
            assert rest.proc.returncode is None, rest.output()
            assert time.monotonic() < deadline, "the rest was not delivered within 120 s"
            await asyncio.sleep(0.2)
        assert await rest.stop() == 0, rest.output()
        received = Counter(got.header("X-LoadImpact-ID") for got in rx.requests)
        assert set(received) == set(statuses)
        twice = [key for key, n in received.items() if n > 1]
        assert not twice, f"{len(twice)} deliveries arrived twice"
    finally:
        gated.gate.set()
        await rx.stop()
        await engine.dispose()
        if server is not None and serving is not None:
            server.should_exit = True
            await serving
