"""Overload: past the in-flight cap a request gets a 503 at once, and a request whose client
has gone is dropped before its handler runs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from conftest import seed, start_server
from loadbell.app import create_app
from loadbell.settings import Settings

from .support import assert_error, stored_rows


class Held:
    """A route of the test's own, ``GET /hold``, whose requests wait until released."""

    def __init__(self, app: FastAPI) -> None:
        self.entered: asyncio.Queue[None] = asyncio.Queue()
        self.release = asyncio.Event()

        async def hold() -> dict[str, str]:
            self.entered.put_nowait(None)
            await self.release.wait()
            return {"held": "done"}

        app.add_api_route("/hold", hold, methods=["GET"])

    async def until_entered(self, count: int, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            for _ in range(count):
                await self.entered.get()


@pytest.fixture
async def capped(settings: Settings) -> AsyncIterator[tuple[str, str, Held]]:
    """loadbell serve with LOADBELL_MAX_IN_FLIGHT=2 and the /hold route."""
    token = await seed(settings)
    small = settings.model_copy(update={"max_in_flight": 2})
    app = create_app(small)
    held = Held(app)
    server, task, url = await start_server(small, app=app)
    yield url, token, held
    held.release.set()
    server.should_exit = True
    await task


async def test_past_the_cap_a_request_gets_503_with_retry_after_at_once(
    capped: tuple[str, str, Held], settings: Settings
) -> None:
    """With both slots held, POST /runs is answered 503 overloaded with Retry-After while the
    held requests are still in flight, and stores nothing; /healthz is not counted; once the
    slots are free, the same request is served."""
    url, token, held = capped
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
        holders = [asyncio.create_task(http.get("/hold")) for _ in range(2)]
        await held.until_entered(2)
        before = await stored_rows(settings)

        refused = await http.post(
            "/api/v1/runs", json={"project_id": 1, "load_test_name": "capped"}
        )
        body = assert_error(refused, 503)
        assert body["error"] == "overloaded" and body["field"] is None
        assert "at most 2 at once" in body["message"], body
        assert refused.headers["Retry-After"] == "1"
        assert refused.headers["X-Request-ID"]
        assert not any(h.done() for h in holders)  # answered while both were still held
        assert await stored_rows(settings) == before

        health = await http.get("/healthz")
        assert health.status_code == 200, health.text  # exempt: probes see the truth

        held.release.set()
        assert [(await h).status_code for h in holders] == [200, 200]
        served = await http.post("/api/v1/runs", json={"project_id": 1, "load_test_name": "capped"})
        assert served.status_code == 201, served.text


async def test_an_error_in_a_handler_frees_its_slot(
    capped: tuple[str, str, Held], settings: Settings
) -> None:
    """Requests that fail (404, 422) give their slot back: more of them than the cap, one
    after the other, are all answered normally."""
    url, token, _ = capped
    async with httpx.AsyncClient(
        base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        for _ in range(5):
            assert (await http.get("/runs/999")).status_code == 404
            assert (await http.post("/runs", json={"project_id": "x"})).status_code == 422
        assert (await http.get("/runs")).status_code == 200


class HoldsCreates:
    """Wraps the app: a ``POST /api/v1/runs`` with ``X-Hold`` is read whole, then held until
    its client has closed the connection, and only then handed to the app (a server busy
    for longer than the client waited)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.holding = asyncio.Event()
        self.handled = asyncio.Event()
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held = scope["type"] == "http" and (b"x-hold", b"1") in scope["headers"]
        if not held:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.holding.set()
        # The body is all read: the next message comes when the client closes.
        self.seen.append((await receive())["type"])
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, send)
        finally:
            self.handled.set()


async def send_and_leave(
    wrapper: HoldsCreates,
    port: int,
    target: str,
    token: str,
    body: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Send ``target`` ("METHOD /path") with a JSON ``body``, close the connection once the
    app holds the request, and check that the server saw the client go and dropped it."""
    head = (
        f"{target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"X-Hold: 1\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    async with asyncio.timeout(20):
        await wrapper.holding.wait()
    writer.close()  # gone before any answer
    await writer.wait_closed()
    with caplog.at_level(logging.INFO, logger="loadbell.api.disconnects"):
        async with asyncio.timeout(20):
            await wrapper.handled.wait()
    assert wrapper.seen == ["http.disconnect"]  # the server knew the client had gone
    assert "closed the connection before it was handled; dropped" in caplog.text


async def test_a_request_whose_client_left_is_dropped_before_its_handler(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A raw client sends POST /runs and closes before the answer while the server holds
    the request: when the app gets it, nothing runs for it and no run or load test is
    stored; the same request from a client that stays is served."""
    token = await seed(settings)
    wrapper = HoldsCreates(create_app(settings))
    server, task, url = await start_server(settings, app=wrapper)
    try:
        port = int(url.rsplit(":", 1)[1])
        body = json.dumps({"project_id": 1, "load_test_name": "abandoned"}).encode()
        before = await stored_rows(settings)
        await send_and_leave(wrapper, port, "POST /api/v1/runs", token, body, caplog)
        assert await stored_rows(settings) == before

        async with httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=30) as http:
            stayed = await http.post(
                "/runs",
                json={"project_id": 1, "load_test_name": "abandoned"},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert stayed.status_code == 201, stayed.text
        after = await stored_rows(settings)
        assert after["runs"] == before["runs"] + 1
    finally:
        server.should_exit = True
        await task


async def test_a_run_update_whose_client_left_is_dropped_before_its_handler(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The same for PATCH /runs/{id}, which the edge answers past the router (D71, D82):
    the run stays at Created, and no event is stored."""
    token = await seed(settings)
    wrapper = HoldsCreates(create_app(settings))
    server, task, url = await start_server(settings, app=wrapper)
    try:
        async with httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=30) as http:
            auth = {"Authorization": f"Bearer {token}"}
            r = await http.post(
                "/runs", json={"project_id": 1, "load_test_name": "abandoned"}, headers=auth
            )
            assert r.status_code == 201, r.text
            run_id = r.json()["id"]
        port = int(url.rsplit(":", 1)[1])
        before = await stored_rows(settings)
        target = f"PATCH /api/v1/runs/{run_id}"
        await send_and_leave(wrapper, port, target, token, b'{"status": 2}', caplog)
        assert await stored_rows(settings) == before
        async with httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=30) as http:
            run = (await http.get(f"/runs/{run_id}", headers=auth)).json()
        assert run["status"] == -2  # still Created
    finally:
        server.should_exit = True
        await task
