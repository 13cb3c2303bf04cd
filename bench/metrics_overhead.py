"""The request metrics middleware's cost per request: a bare ASGI app against the same app
wrapped in RequestMetrics (docs/benchmarks.md). Run: python -m bench.metrics_overhead"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loadbell.api.request_metrics import RequestMetrics
from loadbell.monitoring.registry import Metrics

ROUNDS = 100_000


class Route:
    path = "/runs/{run_id}"  # what the router writes into the scope


async def bare(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = Route
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"x"})


async def _send(message: Any) -> None:
    pass


async def _receive() -> Any:
    return {}


async def per_request(app: Any) -> float:
    """Microseconds per request."""
    started = time.perf_counter()
    for _ in range(ROUNDS):
        scope = {"type": "http", "method": "GET", "path": "/api/v1/runs/5"}
        await app(scope, _receive, _send)
    return (time.perf_counter() - started) / ROUNDS * 1e6


async def main() -> None:
    wrapped = RequestMetrics(bare, Metrics("bench"), "/api/v1")
    for _ in range(3):
        a, b = await per_request(bare), await per_request(wrapped)
        print(f"bare {a:.2f} µs, with metrics {b:.2f} µs: {b - a:.2f} µs per request")


if __name__ == "__main__":
    asyncio.run(main())
