"""A cap on the requests one process has in flight: past it, a 503 at once.

Without a cap, a burst past what the process can serve queues without bound: every request
is taken in, each gets a sliver of the event loop, all of them get slower, clients time
out after 30 s, and the server still finishes (and commits) what they gave up on. Measured
on SQLite at 500 to 1,000 requests/s: 5,865 requests in flight, 30 to 41 % of clients
timed out (docs/benchmarks.md, "Overload"). With the cap, a request past it gets
``503 {"error": "overloaded"}`` with ``Retry-After`` before anything reads its body or the
database, so it costs the server a few dozen microseconds and the client an immediate,
retryable answer; the requests admitted are served at the pace the process can keep.

One counter per process, on the event loop's thread, so no lock: a request counts from
the moment it reaches this middleware until its response has been sent (or it failed).

Not counted (``EXEMPT``): ``/healthz`` (a load balancer or orchestrator must tell
"overloaded" from "dead", and it reads one ``SELECT 1`` with its own timeout) and the web
pages' static files (read from disk, no database). Everything else, the API and the pages,
counts.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

# Paths that bypass the cap: exact paths, and prefixes ending in "/".
EXEMPT = ("/healthz", "/api/v1/healthz", "/static/")
# Seconds a refused client should wait: the cap is a passing condition, and a request
# admitted now is served within well under a second (docs/benchmarks.md, "Overload").
RETRY_AFTER = 1


def exempt(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in EXEMPT)


class Admission:
    def __init__(self, app: ASGIApp, max_in_flight: int, retry_after: int = RETRY_AFTER) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0  # requests admitted and not yet answered
        self.refused = 0  # 503s since start (for tests and the bench's cross-check)
        self._body = orjson.dumps(
            {
                "error": "overloaded",
                "message": f"the server is handling as many requests as it can "
                f"({max_in_flight} at once), so this one was not started and nothing "
                f"changed; send it again after {retry_after} s (Retry-After)",
                "field": None,
            }
        )
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self._body)).encode()),
            (b"retry-after", str(retry_after).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or exempt(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.refused += 1
            headers = list(self._headers)
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
