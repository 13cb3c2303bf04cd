"""Admission by event-loop lag: while the loop runs late, a request gets a 503 at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from conftest import start_server
from loadbell.api.admission import LATE_AND_BUSY, Admission
from loadbell.api.loop_lag import HALF_LIFE, LoopLag
from loadbell.settings import Settings

from .support import assert_error, edge


def test_the_figure_jumps_to_a_peak_and_halves_every_half_life() -> None:
    """A late wake-up sets the figure at once; on-time ones halve it every HALF_LIFE."""
    lag = LoopLag()
    lag.note(0.2, 0.22)
    assert lag.seconds == 0.2
    lag.note(0.0, HALF_LIFE)
    assert lag.seconds == pytest.approx(0.1)
    lag.note(0.3, 0.32)  # a later, larger stall wins over the decayed figure
    assert lag.seconds == 0.3
    lag.note(-0.001, 2 * HALF_LIFE)  # woken a hair early: never below the decayed figure
    assert lag.seconds == pytest.approx(0.075)


async def test_a_stalled_loop_is_seen_as_late() -> None:
    """A callback that holds the loop for 0.3 s makes the watcher's figure at least 0.2 s."""
    lag = LoopLag()
    lag.start()
    try:
        await asyncio.sleep(0.05)  # the watcher is asleep in its timer
        time.sleep(0.3)  # noqa: ASYNC251 -- the point: hold the loop, as a slow callback would
        for _ in range(2000):  # up to 20 s for the watcher's next turn
            if lag.seconds >= 0.2:
                break
            await asyncio.sleep(0.01)
    finally:
        await lag.stop()
    assert lag.seconds >= 0.2, lag.seconds


class HoldingApp:
    """The smallest app: ``/hold`` waits until released, anything else is 200 ``{}`` at
    once (and a lifespan that does nothing)."""

    def __init__(self) -> None:
        self.entered: asyncio.Queue[None] = asyncio.Queue()
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/hold":
            self.entered.put_nowait(None)
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture
async def gated() -> AsyncIterator[tuple[str, LoopLag, HoldingApp]]:
    """A real server whose admission (cap 20) watches a LoopLag the test sets (its watcher
    is not started, so the figure is the test's)."""
    lag, inner = LoopLag(), HoldingApp()
    app = edge(inner, Admission(max_in_flight=20, lag=lag, max_lag=0.05))
    server, task, url = await start_server(Settings(), app=app)
    yield url, lag, inner
    inner.release.set()
    server.should_exit = True
    await task


async def test_while_the_loop_runs_late_a_busy_server_refuses_at_once(
    gated: tuple[str, LoopLag, HoldingApp],
) -> None:
    """With the loop late and LATE_AND_BUSY requests in flight, a request is refused with
    503 overloaded and Retry-After (not /healthz); with fewer in flight, or the loop on time
    again, it is served."""
    url, lag, inner = gated
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        holds = [asyncio.create_task(http.get("/hold")) for _ in range(LATE_AND_BUSY - 1)]
        for _ in holds:
            await asyncio.wait_for(inner.entered.get(), 20)
        lag.seconds = 0.2
        # Late, but not busy: the lateness is not this server's work.
        assert (await http.get("/api/v1/runs")).status_code == 200
        holds.append(asyncio.create_task(http.get("/hold")))
        await asyncio.wait_for(inner.entered.get(), 20)

        refused = await http.get("/api/v1/runs")
        body = assert_error(refused, 503)
        assert body["error"] == "overloaded"
        assert refused.headers["Retry-After"] == "1"
        assert (await http.get("/healthz")).status_code == 200
        lag.seconds = 0.04  # within the limit
        assert (await http.get("/api/v1/runs")).status_code == 200
        inner.release.set()
        assert [(await h).status_code for h in holds] == [200] * LATE_AND_BUSY
