"""Admission by the due backlog: while more deliveries are due than the bound, changes get a
503 at once and reads go on; once the workers catch up, changes are taken again. And a
request that finds no pooled connection gets a 503 instead of waiting on the pool."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.types import Receive, Scope, Send

from conftest import SpawnLoadbell, seed, start_server, webhook_channel, worker_env
from loadbell.api.admission import Admission
from loadbell.api.due_backlog import DueBacklog
from loadbell.app import create_app
from loadbell.settings import Settings
from loadbell.store.db import POOL_TIMEOUT, create_engine, pool_sizes
from loadbell.testing.receiver import RecordingReceiver

from .support import assert_error, edge

BOUND = 3  # deliveries due past which changes are refused, in these tests


async def _patch_until(
    http: httpx.AsyncClient, path: str, status: int, timeout: float = 30
) -> httpx.Response:
    """PATCH ``path`` to Running until the answer has ``status`` (the count runs every
    0.25 s, so the first answers may still be the previous count's)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await http.patch(path, json={"status": 2})
        if answer.status_code == status or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)


async def test_past_the_bound_changes_are_refused_until_a_worker_catches_up(
    settings: Settings, spawn_loadbell: SpawnLoadbell
) -> None:
    """serve --no-worker with LOADBELL_MAX_DUE_BACKLOG=3: four runs moved to Running leave
    four deliveries due, and the next PATCH gets 503 overloaded with Retry-After, changing
    nothing, while GETs and /healthz are served; once a `loadbell worker` has sent them, the
    same PATCH is taken and its delivery is sent too."""
    token = await seed(settings)
    bounded = settings.model_copy(update={"max_due_backlog": BOUND})
    server, task, url = await start_server(bounded, run_worker=False)
    worker = None
    try:
        async with (
            RecordingReceiver() as rx,
            httpx.AsyncClient(
                base_url=f"{url}/api/v1",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ) as http,
        ):
            channel = await http.post(
                "/channels", json=webhook_channel(rx.url, events=["test.started"])
            )
            assert channel.status_code == 201, channel.text
            runs = []
            for i in range(BOUND + 2):
                r = await http.post("/runs", json={"project_id": 1, "load_test_name": f"b{i}"})
                assert r.status_code == 201, r.text
                runs.append(r.json()["id"])
            for run in runs[: BOUND + 1]:  # one delivery each: one past the bound
                answer = await http.patch(f"/runs/{run}", json={"status": 2})
                assert answer.status_code == 200, answer.text

            # A repeat of a done change (no event) shows when the count has caught up.
            assert (await _patch_until(http, f"/runs/{runs[0]}", 503)).status_code == 503
            last = f"/runs/{runs[-1]}"
            refused = await http.patch(last, json={"status": 2})
            body = assert_error(refused, 503)
            assert body["error"] == "overloaded", body
            assert f"more than {BOUND} deliveries are due" in body["message"], body
            assert refused.headers["Retry-After"] == "1"
            assert (await http.get(last)).json()["status"] == -2  # still Created
            assert (await http.get("/runs")).status_code == 200  # reads go on
            async with httpx.AsyncClient(base_url=url, timeout=30) as plain:
                assert (await plain.get("/healthz")).status_code == 200

            worker = await spawn_loadbell("worker", env=worker_env(settings))
            taken = await _patch_until(http, last, 200)
            assert taken.status_code == 200, taken.text
            received = await rx.wait_for(BOUND + 2, timeout=30)
            sent = sorted(r.json()["load_test_run_id"] for r in received)
            assert sent == sorted(runs), sent
    finally:
        if worker is not None:
            await worker.stop()
        server.should_exit = True
        await task


async def test_the_count_stops_just_past_the_bound(
    settings: Settings, spawn_loadbell: SpawnLoadbell
) -> None:
    """DueBacklog counts due deliveries up to bound + 1: none due is 0 and not over; with
    more due than the bound it is over, and reads bound + 1 however many there are."""
    token = await seed(settings)
    server, task, url = await start_server(settings, run_worker=False)
    engine = create_engine(settings)
    try:
        async with (
            RecordingReceiver() as rx,
            httpx.AsyncClient(
                base_url=f"{url}/api/v1",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ) as http,
        ):
            watch = DueBacklog(2)
            assert await watch.refresh(engine) == 0 and not watch.over
            await http.post("/channels", json=webhook_channel(rx.url, events=["test.started"]))
            for i in range(5):
                r = await http.post("/runs", json={"project_id": 1, "load_test_name": f"c{i}"})
                assert (await http.patch(f"/runs/{r.json()['id']}", json={"status": 2})).is_success
            assert await watch.refresh(engine) == 3 and watch.over
            assert await DueBacklog(10).refresh(engine) == 5
    finally:
        await engine.dispose()
        server.should_exit = True
        await task


class Answer:
    """An app that answers 200 to everything (and a lifespan that does nothing)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.parametrize(
    ("method", "refused"),
    [
        ("POST", True),  # creates: refused while behind
        ("PATCH", True),  # run updates: what adds deliveries
        ("PUT", True),
        ("DELETE", True),
        ("GET", False),  # reads add nothing to deliver
        ("HEAD", False),
        ("OPTIONS", False),
    ],
)
async def test_only_changes_are_refused_while_behind(method: str, refused: bool) -> None:
    """With the due count past the bound, API requests whose methods change something get
    503 overloaded; the others, and the pages, are served; once the count is back at the
    bound, all are."""
    backlog = DueBacklog(BOUND)
    app = edge(Answer(), Admission(max_in_flight=20, backlog=backlog))
    server, task, url = await start_server(Settings(), app=app)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            backlog.count = BOUND + 1
            answer = await http.request(method, "/api/v1/runs/1")
            assert answer.status_code == (503 if refused else 200)
            if refused:
                assert answer.headers["Retry-After"] == "1"
            assert (await http.request(method, "/healthz")).status_code == 200  # exempt
            # The pages' forms (signing in, a channel's settings) are not the flood.
            assert (await http.request(method, "/login")).status_code == 200
            backlog.count = BOUND
            assert (await http.request(method, "/api/v1/runs/1")).status_code == 200
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def held_pool(settings: Settings) -> AsyncIterator[tuple[str, str]]:
    """serve with every connection of its pool checked out by the test."""
    token = await seed(settings)
    app = create_app(settings, run_worker=False)
    server, task, url = await start_server(settings, app=app)
    engine = app.state.loadbell.engine
    held: list[AsyncConnection] = []
    try:
        for _ in range(sum(pool_sizes(settings))):
            held.append(await engine.connect())
        yield url, token
    finally:
        for conn in held:
            with contextlib.suppress(Exception):
                await conn.close()
        server.should_exit = True
        await task


async def test_with_no_connection_free_a_request_gets_503_instead_of_waiting(
    held_pool: tuple[str, str],
) -> None:
    """A request that finds the pool empty waits at most POOL_TIMEOUT, then gets 503
    unavailable with Retry-After (SQLAlchemy's default wait is 30 s)."""
    url, token = held_pool
    async with httpx.AsyncClient(
        base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as http:
        started = time.monotonic()
        answer = await http.get("/runs")
        waited = time.monotonic() - started
    body = assert_error(answer, 503)
    assert body["error"] == "unavailable", body
    assert answer.headers["Retry-After"]
    assert waited < POOL_TIMEOUT + 20, waited  # generous: a loaded machine, not 30 s of pool
