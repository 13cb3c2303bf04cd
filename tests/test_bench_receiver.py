"""The benchmarks' receiver (bench/receiver.py) is a real HTTP/1.1 server: it answers each
request in order on a kept-alive connection, reads whole bodies however they are framed,
and counts what the benchmarks count. Each test runs it as the benchmarks do, in a process
of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from bench.deliveries import free_port
from bench.receiver import MAX_BODY, ReceiverProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def receiver() -> Iterator[ReceiverProcess]:
    process = ReceiverProcess(free_port()).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def session(receiver: ReceiverProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await receiver.reset(session)
        yield session


async def _exchange(port: int, data: bytes) -> bytes:
    """Write ``data`` on a new connection and read until the receiver closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    await writer.wait_closed()
    return answer


async def test_requests_on_one_connection_are_each_answered_and_counted(
    receiver: ReceiverProcess, session: aiohttp.ClientSession
) -> None:
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as one:
        for _ in range(3):
            async with one.post(f"{receiver.url}/drain", data=b'{"a": 1}') as resp:
                assert resp.status == 204
                assert resp.headers["Date"].endswith("GMT")
                assert await resp.read() == b""
    stats = await receiver.stats(session)
    assert stats.count == 3
    assert stats.last > 0
    assert stats.cpu > 0


async def test_pipelined_requests_are_answered_in_order(receiver: ReceiverProcess) -> None:
    request = b"POST /drain HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    stats = b"GET /_bench/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    await _exchange(receiver.port, b"POST /_bench/reset HTTP/1.1\r\nHost: x\r\n\r\n" + stats)
    answer = await _exchange(receiver.port, request * 2 + stats)
    assert answer.count(b"HTTP/1.1 204 No Content\r\n") == 2
    assert answer.index(b"204") < answer.index(b"HTTP/1.1 200 OK")
    assert b'"count":2' in answer


async def test_a_chunked_body_is_read_whole(
    receiver: ReceiverProcess, session: aiohttp.ClientSession
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"load_test_run_id"'
        yield b": 7}"

    async with session.post(f"{receiver.url}/latency", data=chunks()) as resp:
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert resp.status == 204
    assert 7 in (await receiver.stats(session)).arrivals


async def test_latency_keeps_each_runs_first_arrival(
    receiver: ReceiverProcess, session: aiohttp.ClientSession
) -> None:
    for _ in range(2):
        async with session.post(f"{receiver.url}/latency", json={"load_test_run_id": 5}) as r:
            assert r.status == 204
    async with session.post(f"{receiver.url}/latency", json={"other": 1}) as resp:
        assert resp.status == 204
    async with session.post(f"{receiver.url}/latency", data=b"not json") as resp:
        assert resp.status == 400
    stats = await receiver.stats(session)
    assert list(stats.arrivals) == [5]
    assert stats.arrivals[5] <= stats.last
    assert stats.count == 4


async def test_reset_clears_the_tally_and_unknown_control_paths_are_404(
    receiver: ReceiverProcess, session: aiohttp.ClientSession
) -> None:
    async with session.post(f"{receiver.url}/latency", json={"load_test_run_id": 1}) as resp:
        assert resp.status == 204
    async with session.get(f"{receiver.url}/_bench/reset") as resp:
        assert resp.status == 404  # reset is a POST
    async with session.get(f"{receiver.url}/_bench/nothing") as resp:
        assert resp.status == 404
    assert (await receiver.stats(session)).count == 1
    await receiver.reset(session)
    stats = await receiver.stats(session)
    assert (stats.count, stats.last, stats.arrivals) == (0, 0.0, {})


async def test_connection_close_is_honoured(receiver: ReceiverProcess) -> None:
    answer = await _exchange(
        receiver.port, b"POST /drain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Connection: close\r\n" in answer


async def test_a_body_over_the_limit_is_refused_and_the_connection_closed(
    receiver: ReceiverProcess, session: aiohttp.ClientSession
) -> None:
    body = b"x" * (MAX_BODY + 1)
    head = b"POST /drain HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    answer = await _exchange(receiver.port, head + body)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert (await receiver.stats(session)).count == 0


async def test_a_client_that_expects_100_continue_gets_it(
    receiver: ReceiverProcess, session: aiohttp.ClientSession
) -> None:
    async with session.post(f"{receiver.url}/drain", data=b"{}", expect100=True) as resp:
        assert resp.status == 204
    assert (await receiver.stats(session)).count == 1


async def test_malformed_requests_get_400_and_a_closed_connection(
    receiver: ReceiverProcess,
) -> None:
    answer = await _exchange(receiver.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
