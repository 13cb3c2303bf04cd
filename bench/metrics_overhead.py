"""The request edge's cost per request (``api/edge.py``: the request metrics, the request
id, admission, the body limit and the JSON guard): a bare ASGI app against the same app
behind the edge, for a ``GET`` and for a ``PATCH`` with a small JSON body
(docs/benchmarks.md). Run: python -m bench.metrics_overhead"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loadbell.api.admission import Admission
from loadbell.api.edge import Edge
from loadbell.monitoring.registry import Metrics

ROUNDS = 100_000
BODY = b'{"status": 2}'
HEADERS = {
    "GET": [(b"host", b"127.0.0.1"), (b"authorization", b"Bearer x")],
    "PATCH": [
        (b"host", b"127.0.0.1"),
        (b"authorization", b"Bearer x"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
}


class Route:
    path = "/runs/{run_id}"  # what the router writes into the scope


async def bare(scope: Any, receive: Any, send: Any) -> None:
    scope["route"] = Route
    if scope["method"] == "PATCH":
        await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"x"})


async def _send(message: Any) -> None:
    pass


async def _receive() -> Any:
    return {"type": "http.request", "body": BODY, "more_body": False}


async def per_request(app: Any, method: str) -> float:
    """Microseconds per request."""
    started = time.perf_counter()
    for _ in range(ROUNDS):
        scope = {
            "type": "http",
            "method": method,
            "path": "/api/v1/runs/5",
            "headers": HEADERS[method],
        }
        await app(scope, _receive, _send)
    return (time.perf_counter() - started) / ROUNDS * 1e6


async def main() -> None:
    edge = Edge(
        bare,
        metrics=Metrics("bench"),
        api_prefix="/api/v1",
        admission=Admission(max_in_flight=64),
        max_body_bytes=1 << 20,
    )
    for _ in range(3):
        for method in ("GET", "PATCH"):
            a, b = await per_request(bare, method), await per_request(edge, method)
            print(f"{method:5s} bare {a:.2f} µs, behind the edge {b:.2f} µs: {b - a:.2f} µs")


if __name__ == "__main__":
    asyncio.run(main())
