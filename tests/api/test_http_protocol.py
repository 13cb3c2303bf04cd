"""Each answer leaves in one write (api/http_protocol.py), through a real uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from conftest import start_server
from loadbell.api.http_protocol import FLUSH_AT, OneWriteHttp, TurnBuffer
from loadbell.settings import Settings


class Recorder:
    """A transport's writes, noted on their way to the real one."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def recording(base: type[HttpToolsProtocol], writes: list[bytes]) -> type[HttpToolsProtocol]:
    class Recording(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(Recorder(transport, writes))

    return Recording


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A small ASGI app: 200 with a JSON body, or a streamed body in parts (/stream); it
    starts and stops as uvicorn's lifespan asks."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)  # later turns of the loop: written part by part
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    body = b'{"status":2}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def serving() -> AsyncIterator[Any]:
    """Serve ``answer`` with a given protocol class; returns the port. No database: the
    settings go unused (once, not per database backend)."""
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def serve(protocol: type[HttpToolsProtocol]) -> int:
        server, task, _ = await start_server(Settings(), app=answer, http=protocol)
        servers.append((server, task))
        return int(server.config.port)

    yield serve
    for server, task in servers:
        server.should_exit = True
        await task


async def exchange(port: int, requests: list[bytes]) -> bytes:
    """Send each request on one kept-alive connection, reading its whole answer first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = b""
    try:
        for request in requests:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            got += head + await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()
    return got


GET = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


async def test_each_answer_is_one_write(serving: Any) -> None:
    writes: list[bytes] = []
    port = await serving(recording(OneWriteHttp, writes))
    got = await exchange(port, [GET, GET, GET])
    assert len(writes) == 3
    for write in writes:
        assert write.startswith(b"HTTP/1.1 200 OK\r\n")
        assert write.endswith(b'\r\n\r\n{"status":2}')
    assert got == b"".join(writes)


async def test_uvicorns_own_protocol_writes_twice(serving: Any) -> None:
    """Why OneWriteHttp exists: should uvicorn ever write an answer at once by itself, this
    fails, and the class can go."""
    writes: list[bytes] = []
    port = await serving(recording(HttpToolsProtocol, writes))
    await exchange(port, [GET])
    assert len(writes) == 2
    assert writes[1] == b'{"status":2}'


async def test_a_streamed_answer_goes_out_part_by_part(serving: Any) -> None:
    writes: list[bytes] = []
    port = await serving(recording(OneWriteHttp, writes))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
    body = await reader.readuntil(b"0\r\n\r\n")
    writer.close()
    await writer.wait_closed()
    assert body.endswith(b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n")
    # The start and the first part share a turn; each later part is a write of its own.
    assert len(writes) == 4
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and writes[0].endswith(b"one,\r\n")


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


async def test_writes_of_one_turn_are_sent_together_when_it_ends() -> None:
    transport = Transport()
    buffer = TurnBuffer(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    buffer.write(b"head ")
    buffer.writelines([b"bo", b"dy"])
    assert transport.writes == []
    await asyncio.sleep(0)
    assert transport.writes == [b"head body"]
    buffer.write(b"")
    await asyncio.sleep(0)
    assert transport.writes == [b"head body"]
    assert buffer.get_extra_info("peername") == "info peername"


async def test_a_large_write_is_not_held() -> None:
    transport = Transport()
    buffer = TurnBuffer(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    buffer.write(b"h")
    buffer.write(b"x" * FLUSH_AT)
    assert transport.writes == [b"h" + b"x" * FLUSH_AT]
    await asyncio.sleep(0)
    assert len(transport.writes) == 1


async def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    closing = Transport()
    buffer = TurnBuffer(closing, asyncio.get_running_loop())  # type: ignore[arg-type]
    buffer.write(b"last answer")
    buffer.close()
    assert closing.writes == [b"last answer"] and closing.closed
    await asyncio.sleep(0)  # the turn's flush finds nothing left
    assert closing.writes == [b"last answer"]

    aborting = Transport()
    buffer = TurnBuffer(aborting, asyncio.get_running_loop())  # type: ignore[arg-type]
    buffer.write(b"never sent")
    buffer.abort()
    await asyncio.sleep(0)
    assert aborting.writes == [] and aborting.aborted
