"""The ceiling: a bare aiohttp POST loop, with no database, at the worker's concurrency.

It sends the very request the webhook channel renders (same URL, body and headers) and reads
each response, so the drain's ratio to it is the cost of everything loadbell adds: the
claim, the rendering, the sender's bookkeeping and the batched completion writes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from loadbell.runtime import settle_heap
from loadbell.values import OutboundRequest


@dataclass(frozen=True)
class RawResult:
    requests: int
    seconds: float
    failures: int
    cpu_seconds: float  # this process's CPU time during the loop

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


# A process's first loop of requests cost up to twice the CPU per request of the next ones
# (code paths, the allocator and the receiver warming up), which flattered a drain measured
# against it: benches run this many requests, untimed, before their first timed loop.
WARM_UP_REQUESTS = 5_000


async def warm_up(request: OutboundRequest, concurrency: int, n: int = WARM_UP_REQUESTS) -> None:
    """An untimed raw loop, before a process's first timed one, under the collector's
    settings the drain's worker gets.

    The drain sets them (``runtime.settle_heap``, as ``loadbell worker`` does), and they
    stay for the rest of the process: without them here, the first round's raw loop
    alone ran with CPython's defaults, at 68-76 µs of CPU per request against 63-65 µs
    in the rounds after a drain, and flattered that round's drain by up to a tenth
    (docs/decisions.md, D78).
    """
    settle_heap()
    await raw_loop(request, n, concurrency)


async def raw_loop(request: OutboundRequest, n: int, concurrency: int) -> RawResult:
    """POST ``request`` ``n`` times with ``concurrency`` requests in flight."""
    remaining = n
    failures = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            async with session.request(
                request.method, request.url, data=request.body, headers=request.headers
            ) as resp:
                await resp.read()
                if resp.status >= 300:
                    failures += 1

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        # Open the connections first, as the worker's session has after its first batch.
        await asyncio.gather(*(_warm(session, request) for _ in range(concurrency)))
        started = time.perf_counter()
        cpu = time.process_time()
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return RawResult(requests=n, seconds=seconds, failures=failures, cpu_seconds=cpu)


async def _warm(session: aiohttp.ClientSession, request: OutboundRequest) -> None:
    async with session.request(
        request.method, request.url, data=request.body, headers=request.headers
    ) as resp:
        await resp.read()
