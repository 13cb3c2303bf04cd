"""A worker killed mid-drain strands only its attempts in flight: what it had claimed but
not started is taken by the other worker within seconds, not after the 30 s lease."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import (
    LoadbellProcess,
    SpawnLoadbell,
    seed,
    stage_runs,
    start_server,
    webhook_channel,
    worker_env,
)
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import deliveries
from loadbell.testing import RecordingReceiver
from loadbell.testing.receiver import Received

pytestmark = pytest.mark.slow

CHANNELS = 10
RUNS = 150
BACKLOG = RUNS * 2 * CHANNELS  # 3,000 deliveries per drain: each run starts and finishes
LEASE = 30.0  # seconds (LOADBELL_LEASE_SECONDS), set explicitly: what the dead worker's
# attempts in flight wait for, and what its claimed but unstarted deliveries must not
WORKER_SLOTS = 24  # attempts in flight per worker (LOADBELL_WORKER_CONCURRENCY)
# The receiver answers this many requests at a time, each after DELAY: fewer than one
# worker's slots, so one worker alone keeps it busy and the drain's pace does not depend
# on how many workers are left. The kill then costs only what waits for another worker.
# (Slow enough that a worker needs a fraction of a core: a drain bound by CPU would slow
# down when one of two workers is gone.)
RECEIVER_SLOTS = 16
DELAY = 0.04  # seconds per request: 400 requests/s at most, a drain of 7.5 s or more
KILL_AT = BACKLOG // 3  # deliveries received before the kill
TAKEOVER_MARGIN = 10.0  # seconds the drain with a kill may take beyond the one without
# After the kill, how long requests the dead worker had already written may take to reach
# the receiver's handler (they were in the socket buffers, not yet read).
STRAGGLERS = 0.2  # seconds


class BusyReceiver:
    """A handler answering RECEIVER_SLOTS requests at a time after DELAY each; it knows
    which delivery ids it has received but not yet answered (requests in flight)."""

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(RECEIVER_SLOTS)
        self.unanswered: Counter[str] = Counter()

    async def __call__(self, got: Received) -> web.Response:
        key = got.header("X-LoadImpact-ID") or ""
        self.unanswered[key] += 1
        try:
            async with self.slots:
                await asyncio.sleep(DELAY)
        finally:
            self.unanswered[key] -= 1
            if not self.unanswered[key]:
                del self.unanswered[key]
        return web.Response(text="ok")


@dataclass
class Drain:
    seconds: float  # from the first arrival to the arrival that completed the backlog
    # Attempts in flight at the kill: sent (the receiver has them) but not recorded (the
    # database still has them pending), whether answered yet or not.
    in_flight_at_kill: set[str]


def _drain_time(requests: list[Received], ids: set[str]) -> float:
    """Seconds from the first request to the one that completed ``ids``."""
    seen: set[str] = set()
    for got in requests:
        seen.add(got.header("X-LoadImpact-ID") or "")
        if ids <= seen:
            return got.at - requests[0].at
    raise AssertionError(f"{len(ids - seen)} of {len(ids)} deliveries never arrived")


async def _stage(api: httpx.AsyncClient, engine: AsyncEngine, before: set[str]) -> set[str]:
    """A backlog of BACKLOG deliveries; returns their ids (those not in ``before``)."""
    await stage_runs(api, RUNS, "crash")
    async with engine.connect() as conn:
        ids = {r.uuid for r in await conn.execute(sa.select(deliveries.c.uuid))} - before
    assert len(ids) == BACKLOG
    return ids


async def _all_succeeded(engine: AsyncEngine, ids: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with engine.connect() as conn:
            left = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(deliveries.c.uuid.in_(ids), deliveries.c.status != "succeeded")
                )
            ).scalar_one()
        if not left:
            return
        assert time.monotonic() < deadline, f"{left} deliveries not succeeded after {timeout} s"
        await asyncio.sleep(0.2)


async def _drain(
    engine: AsyncEngine,
    rx: RecordingReceiver,
    busy: BusyReceiver,
    workers: list[LoadbellProcess],
    ids: set[str],
    *,
    kill: bool,
) -> Drain:
    """Wait until every id in ``ids`` has arrived; with ``kill``, SIGKILL the first worker
    once a third of them has, while both workers have attempts in flight."""
    first = len(rx.requests)
    in_flight: set[str] = set()
    if kill:
        deadline = time.monotonic() + 120
        while True:
            arrived = {r.header("X-LoadImpact-ID") for r in rx.requests[first:]}
            # More than one worker's slots unanswered: both are sending.
            if len(arrived) >= KILL_AT and sum(busy.unanswered.values()) > WORKER_SLOTS:
                break
            assert time.monotonic() < deadline, (
                f"never {KILL_AT} arrived with both workers sending ({len(arrived)} arrived, "
                f"{sum(busy.unanswered.values())} in flight)"
            )
            await asyncio.sleep(0.005)
        workers[0].proc.send_signal(signal.SIGKILL)
        assert await workers[0].finish() == -signal.SIGKILL
        await asyncio.sleep(STRAGGLERS)
        # What the dead worker sent but did not record (answered or not) stays pending
        # until another worker sends it again, seconds later at the very least: read now,
        # this holds all of it. It also holds the other worker's latest attempts, not yet
        # recorded, which only makes the bound looser. (Unanswered requests alone would
        # miss attempts answered but not yet recorded; the dead worker's slots alone would
        # too: results are written in batches.)
        sent = {r.header("X-LoadImpact-ID") for r in rx.requests[first:]}
        async with engine.connect() as conn:
            pending = await conn.execute(
                sa.select(deliveries.c.uuid).where(deliveries.c.status != "succeeded")
            )
            in_flight = sent & {r.uuid for r in pending}
        assert len(arrived) < BACKLOG, (
            f"all {BACKLOG} deliveries had arrived before the kill: make the backlog larger "
            "or the receiver slower"
        )
    deadline = time.monotonic() + 120
    while not ids <= {r.header("X-LoadImpact-ID") for r in rx.requests[first:]}:
        for w in workers[1 if kill else 0 :]:
            assert w.proc.returncode is None, w.output()
        assert time.monotonic() < deadline, "the backlog was not drained within 120 s"
        await asyncio.sleep(0.05)
    return Drain(_drain_time(rx.requests[first:], ids), in_flight)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_killed_worker_strands_only_attempts_in_flight(
    settings: Settings, spawn_loadbell: SpawnLoadbell
) -> None:
    """Two workers drain 3,000 deliveries, then another 3,000 with one SIGKILLed a third of the
    way: the second drain takes at most 10 s longer than the first (the dead worker's claimed
    deliveries do not wait for its 30 s lease), and only deliveries that were in flight at
    the kill arrive twice."""
    token = await seed(settings)
    # The backlog is staged with no worker running, past LOADBELL_MAX_DUE_BACKLOG: its bound
    # would refuse the staging itself (api/due_backlog.py).
    staging = settings.model_copy(update={"max_due_backlog": 0})
    server, serving, url = await start_server(staging, run_worker=False)
    engine = create_engine(settings)
    busy = BusyReceiver()
    rx = RecordingReceiver(handler=busy)
    await rx.start()
    env = worker_env(
        settings,
        LOADBELL_LEASE_SECONDS=str(LEASE),
        LOADBELL_WORKER_CONCURRENCY=str(WORKER_SLOTS),
    )
    try:
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            for i in range(CHANNELS):
                r = await api.post("/channels", json=webhook_channel(f"{rx.url}/{i}"))
                assert r.status_code == 201, r.text

            calm = await _stage(api, engine, set())
            workers = [await spawn_loadbell("worker", env=env) for _ in range(2)]
            without = await _drain(engine, rx, busy, workers, calm, kill=False)
            await _all_succeeded(engine, calm, timeout=60)
            for w in workers:
                assert await w.stop() == 0, w.output()

            before = len(rx.requests)
            crash = await _stage(api, engine, calm)
            workers = [await spawn_loadbell("worker", env=env) for _ in range(2)]
            with_kill = await _drain(engine, rx, busy, workers, crash, kill=True)
        print(
            f"drain of {BACKLOG}: {without.seconds:.2f} s, with a worker killed "
            f"{with_kill.seconds:.2f} s; {len(with_kill.in_flight_at_kill)} in flight at the kill"
        )
        assert with_kill.seconds <= without.seconds + TAKEOVER_MARGIN, (
            f"with a worker killed the drain took {with_kill.seconds:.1f} s, without "
            f"{without.seconds:.1f} s: what the dead worker had claimed but not started waited "
            f"more than {TAKEOVER_MARGIN} s (its lease is {LEASE} s)"
        )

        # The dead worker's attempts in flight are sent again once their lease ends.
        await _all_succeeded(engine, crash, timeout=LEASE + 60)
        sent = Counter(r.header("X-LoadImpact-ID") for r in rx.requests[before:])
        twice = {key for key, n in sent.items() if n > 1}
        print(f"{len(twice)} deliveries arrived twice")
        assert twice <= with_kill.in_flight_at_kill, (
            f"{len(twice - with_kill.in_flight_at_kill)} deliveries arrived twice that were not "
            f"in flight at the kill ({len(twice)} arrived twice)"
        )
        assert workers[1].proc.returncode is None, workers[1].output()
        assert await workers[1].stop() == 0, workers[1].output()
    finally:
        await rx.stop()
        await engine.dispose()
        server.should_exit = True
        await serving
