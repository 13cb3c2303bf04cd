"""A recording HTTP receiver: a real server on 127.0.0.1 that keeps every request.

Use it in tests (``async with RecordingReceiver() as rx: ... await rx.wait_for(2)``) or from
the shell (``loadbell receiver --port 9000``) to see exactly what loadbell sends.
Responses can be scripted: a fixed status, a queue of statuses, a delay, or a custom handler.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when the request arrived

    def json(self) -> Any:
        return orjson.loads(self.body)

    def header(self, name: str) -> str | None:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return None


Handler = Callable[[Received], Awaitable[web.StreamResponse] | web.StreamResponse]


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: a free port); returns the runner and the port."""
    # A handler that hangs must not hold shutdown for aiohttp's default 60 s.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])


@dataclass
class RecordingReceiver:
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    status: int = 200
    body: str = "ok"
    delay: float = 0.0  # seconds before answering
    statuses: deque[int] = field(default_factory=deque)  # consumed first, then ``status``
    handler: Handler | None = None
    requests: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> RecordingReceiver:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await start_site(app, self.host, self.port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> RecordingReceiver:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        received = Received(
            method=request.method,
            path=request.path_qs,
            headers=dict(request.headers),
            body=await request.read(),
            at=time.time(),
        )
        self.requests.append(received)
        async with self._arrived:
            self._arrived.notify_all()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.handler is not None:
            result = self.handler(received)
            return await result if asyncio.iscoroutine(result) else result  # type: ignore[return-value]
        status = self.statuses.popleft() if self.statuses else self.status
        return web.Response(status=status, text=self.body if status != 204 else None)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least ``count`` requests arrived; raise TimeoutError otherwise."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.requests) >= count), timeout
            )
        return list(self.requests)


async def serve_forever(port: int, status: int) -> None:
    async def show(r: Received) -> web.Response:
        print(f"--- {r.method} {r.path}")
        for k, v in r.headers.items():
            print(f"{k}: {v}")
        print()
        print(r.body.decode(errors="replace"), flush=True)
        return web.Response(status=status, text="ok")

    receiver = RecordingReceiver(port=port, handler=show)
    async with receiver:
        print(f"listening on {receiver.url}", flush=True)
        await asyncio.Event().wait()
