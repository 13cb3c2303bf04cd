"""Latency: a new delivery wakes an idle worker at once, in-process and across processes on
PostgreSQL (LISTEN/NOTIFY) and on SQLite (data_version), instead of waiting for the next poll.

The poll interval is set to 10 minutes, so an event that waited for a poll would not arrive
during the test at all. The limit on each latency is generous (a loaded CI machine can take a
second or two for an API call); the figures themselves are printed, and measured properly by
``bench/`` (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from conftest import Server, SpawnLoadbell, seed, start_server, webhook_channel, worker_env
from loadbell.delivery.wakeup import Wakeup
from loadbell.settings import Settings
from loadbell.testing import RecordingReceiver

POLL = 600.0  # seconds; LOADBELL_POLL_SECONDS
LIMIT = 15.0  # seconds from the API call to the receiver; a poll would take up to POLL
EVENTS = 3


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """The shared test settings, with a poll interval no test could hide behind."""
    return Settings(
        database_url=db_url,
        secret_key="test-secret-key",
        secret_key_file=tmp_path / "unused.key",
        allow_private_targets=True,
        public_url="http://loadbell.test",
        poll_seconds=POLL,
    )


async def _latencies(api: httpx.AsyncClient, rx: RecordingReceiver) -> list[float]:
    """Start ``EVENTS`` runs one after another, each once the worker has gone idle again, and
    return the seconds from each API call to the request reaching ``rx``."""
    if not rx.requests:
        hook = webhook_channel(f"{rx.url}/hook", events=["test.started"])
        r = await api.post("/channels", json=hook)
        assert r.status_code == 201, r.text
    latencies = []
    for i in range(len(rx.requests), len(rx.requests) + EVENTS):
        run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "lat"})).json()
        await asyncio.sleep(0.3)  # the worker is back in its idle wait
        called = time.time()
        r = await api.patch(f"/runs/{run['id']}", json={"status": 2})
        assert r.status_code == 200, r.text
        got = await rx.wait_for(i + 1, timeout=LIMIT)
        latencies.append(got[i].at - called)
    return latencies


LISTENERS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
)


async def _pg(database_url: str, sql: str, *args: object) -> list[Any]:
    """Run ``sql`` on a connection of the test's own, not one of loadbell's."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def test_in_process_worker_wakes_at_once(
    app_server: Server, api: httpx.AsyncClient, receiver: RecordingReceiver
) -> None:
    """With a 10-minute poll, each run event of `loadbell serve` reaches the webhook at once."""
    latencies = await _latencies(api, receiver)
    print(f"in-process wake-up latency (s): {[round(x, 3) for x in latencies]}")
    assert max(latencies) < LIMIT, latencies


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_worker_process_wakes_on_notify(
    settings: Settings, spawn_loadbell: SpawnLoadbell, receiver: RecordingReceiver
) -> None:
    """With a 10-minute poll, a separate `loadbell worker` delivers each event of an API-only
    process at once, woken by LISTEN/NOTIFY, and still does after its LISTEN connection
    is killed on the server."""
    token = await seed(settings)
    server, serving, url = await start_server(settings, run_worker=False)
    try:
        worker = await spawn_loadbell(
            "worker", env=worker_env(settings, LOADBELL_POLL_SECONDS=str(POLL))
        )
        await worker.wait_for_line("started")
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}
        ) as api:
            latencies = await _latencies(api, receiver)
            print(f"cross-process wake-up latency (s): {[round(x, 3) for x in latencies]}")
            assert max(latencies) < LIMIT, latencies

            [(listener,)] = await _pg(settings.database_url, LISTENERS)
            await _pg(settings.database_url, "SELECT pg_terminate_backend($1)", listener)
            await worker.wait_for_line("LISTEN connection to PostgreSQL dropped")
            for _ in range(100):
                again = [r[0] for r in await _pg(settings.database_url, LISTENERS)]
                if again:
                    break
                await asyncio.sleep(0.05)
            assert again and listener not in again, "the worker LISTENs again"
            latencies = await _latencies(api, receiver)
            print(f"after re-LISTEN (s): {[round(x, 3) for x in latencies]}")
            assert max(latencies) < LIMIT, latencies
    finally:
        server.should_exit = True
        await serving


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_worker_process_wakes_on_sqlite_commit(
    settings: Settings, spawn_loadbell: SpawnLoadbell, receiver: RecordingReceiver
) -> None:
    """With a 10-minute poll, a separate `loadbell worker` on the same SQLite file delivers
    each event of an API-only process at once, woken by SQLite's data_version."""
    token = await seed(settings)
    server, serving, url = await start_server(settings, run_worker=False)
    try:
        worker = await spawn_loadbell(
            "worker", env=worker_env(settings, LOADBELL_POLL_SECONDS=str(POLL))
        )
        await worker.wait_for_line("started")
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}
        ) as api:
            latencies = await _latencies(api, receiver)
            print(f"cross-process SQLite wake-up latency (s): {[round(x, 3) for x in latencies]}")
            assert max(latencies) < LIMIT, latencies
    finally:
        server.should_exit = True
        await serving


async def test_a_poke_is_relayed_to_the_worker_process() -> None:
    """A poke sets the process's own event and is passed on to every relay (serve writes
    it to its worker process's pipe), once per poke."""
    wakeup, relayed = Wakeup(), []
    wakeup.relay_to(lambda: relayed.append(1))
    wakeup.poke()
    wakeup.poke()
    assert wakeup.poked and relayed == [1, 1]
