"""API call -> first delivery attempt, at a steady rate, through the real server.

``loadbell serve`` runs as a child process with its in-process worker. Runs are created
beforehand; an open-loop client then sends ``PATCH /runs/{id} {"status": 2}`` on a fixed
schedule (request i is due at t0 + i/rate, whether or not earlier ones have answered), the
channel subscribes to ``test.started``, and the receiver notes when each run's notification
arrived. Latency = arrival - *scheduled* send time, so a lagging client cannot hide queueing
(the method of hookdeck/outpost ``loadtest/README.md``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.backlog import create_load_test, create_runs
from bench.receiver import ROOT, ReceiverProcess
from loadbell.settings import Settings
from loadbell.store.db import create_engine

_ARRIVAL_GRACE = 10.0  # seconds to wait for stragglers after the last PATCH answered


@dataclass(frozen=True)
class LatencyResult:
    offered_rate: float  # events/s the client actually kept up
    answered_rate: float  # PATCH responses/s, first send to last answer: the API's pace
    samples: list[float]  # seconds, one per measured event that arrived
    missing: int  # measured events with no arrival within the grace period
    api_seconds: list[float]  # PATCH response times (client side)
    api_errors: int


def settings_env(settings: Settings) -> dict[str, str]:
    """The same settings for a child process, as LOADBELL_* variables."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        env[f"LOADBELL_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


class ServerProcess:
    """``python -m loadbell.cli serve`` on 127.0.0.1:port, output kept in ``log``.
    ``module`` runs another entry point with the same command line (bench/traced_serve.py)."""

    def __init__(
        self,
        settings: Settings,
        port: int,
        log: Path,
        extra_args: tuple[str, ...] = (),
        module: str = "loadbell.cli",
    ) -> None:
        self.settings = settings
        self.extra_args = extra_args  # e.g. ("--no-worker",)
        self.module = module
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.log = log
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the server is not running"
        return self._proc.pid

    async def start(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        with self.log.open("wb") as out:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", self.module, "serve", "--port", str(self.port), *self.extra_args),
                cwd=ROOT,
                env=settings_env(self.settings),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._proc.returncode is None:
            try:
                async with session.get(f"{self.url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"loadbell serve did not become healthy; see {self.log}")

    async def stop(self) -> None:
        """SIGTERM (uvicorn shuts down gracefully, the worker flushes), then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def prepare_runs(settings: Settings, count: int) -> list[int]:
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            return await create_runs(conn, await create_load_test(conn), count)
    finally:
        await engine.dispose()


async def add_channel(
    session: aiohttp.ClientSession,
    api: str,
    token: str,
    name: str,
    config: dict[str, Any],
    events: Sequence[str] = ("test.started",),
) -> None:
    """Creates the organization's webhook channel the benchmark's events go to."""
    async with session.post(
        f"{api}/channels",
        headers={"Authorization": f"Bearer {token}"},
        json={
            "organization_id": 1,
            "kind": "webhook",
            "name": name,
            "config": config,
            "events": list(events),
        },
    ) as resp:
        if resp.status != 201:
            raise RuntimeError(f"creating the channel failed: {resp.status} {await resp.text()}")


async def measure_latency(
    server: ServerProcess,
    receiver: ReceiverProcess,
    session: aiohttp.ClientSession,
    token: str,
    run_ids: list[int],
    *,
    rate: float,
    warmup: int,
) -> LatencyResult:
    """PATCH every run to Running at ``rate`` per second; the first ``warmup`` are not
    measured (connection set-up, statement caches)."""
    api = f"{server.url}/api/v1"
    auth = {"Authorization": f"Bearer {token}"}
    await add_channel(
        session,
        api,
        token,
        "bench latency",
        {"url": f"{receiver.url}/latency", "format": "loadimpact"},
    )
    await receiver.reset(session)

    api_seconds: dict[int, float] = {}
    api_errors = 0

    async def patch(run_id: int) -> None:
        nonlocal api_errors
        sent = time.perf_counter()
        try:
            async with session.patch(
                f"{api}/runs/{run_id}", headers=auth, json={"status": 2}
            ) as resp:
                await resp.read()
                if resp.status != 200:
                    api_errors += 1
        except (aiohttp.ClientError, TimeoutError):  # a saturated server: counted, not fatal
            api_errors += 1
        api_seconds[run_id] = time.perf_counter() - sent

    loop = asyncio.get_running_loop()
    start_mono = loop.time() + 0.1
    start_wall = time.time() + (start_mono - loop.time())
    scheduled: dict[int, float] = {}
    tasks: list[asyncio.Task[None]] = []
    for i, run_id in enumerate(run_ids):
        delay = start_mono + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        scheduled[run_id] = start_wall + i / rate
        tasks.append(asyncio.create_task(patch(run_id)))
    last_sent = loop.time()
    await asyncio.gather(*tasks)
    answered_by = loop.time()
    offered = (len(run_ids) - 1) / (last_sent - start_mono) if len(run_ids) > 1 else 0.0

    measured = run_ids[warmup:]
    deadline = loop.time() + _ARRIVAL_GRACE
    while True:
        tally = await receiver.stats(session)
        if all(r in tally.arrivals for r in measured) or loop.time() > deadline:
            break
        await asyncio.sleep(0.1)
    samples = [tally.arrivals[r] - scheduled[r] for r in measured if r in tally.arrivals]
    return LatencyResult(
        offered_rate=offered,
        answered_rate=len(run_ids) / (answered_by - start_mono),
        samples=samples,
        missing=len(measured) - len(samples),
        api_seconds=[api_seconds[r] for r in measured],
        api_errors=api_errors,
    )
