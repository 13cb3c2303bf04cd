"""Admission: a request the process cannot serve promptly gets a 503 at once.

Without a cap, a burst past what the process can serve queues without bound: every request
is taken in, each gets a sliver of the event loop, all of them get slower, clients time
out after 30 s, and the server still finishes (and commits) what they gave up on. Measured
on SQLite at 500 to 1,000 requests/s: 5,865 requests in flight, 30 to 41 % of clients
timed out (docs/benchmarks.md, "Overload"). Here a request the process cannot take on gets
``503 {"error": "overloaded"}`` with ``Retry-After`` before anything reads its body or the
database, so it costs the server little and the client an immediate, retryable answer; the
requests admitted are served at the pace the process can keep.

Two signals, each enough to refuse:

- **Requests in flight** (``LOADBELL_MAX_IN_FLIGHT``): one counter per process, on the
  event loop's thread, so no lock; a request counts from the moment it reaches this
  middleware until its response has been sent (or it failed). It bounds what the process
  holds at once: memory, pooled connections, the queue behind SQLite's write lock.
- **How far behind the event loop runs** (:mod:`loadbell.api.loop_lag`), past
  ``LOADBELL_MAX_LOOP_LAG_MS`` (50). A cap alone did not hold: at 800 requests/s on the
  2-core machine, with 32 or 64 admitted at once the loop spent all its time on admitted
  work, the requests to refuse waited behind it in the socket buffers, and clients timed
  out as before (docs/benchmarks.md, "Overload"). Refusing while the loop is late keeps
  time for the refusals themselves, whatever the machine's speed and whatever else runs
  on it.

Not counted (``EXEMPT``): ``/healthz`` (a load balancer or orchestrator must tell
"overloaded" from "dead", and it reads one ``SELECT 1`` with its own timeout) and the web
pages' static files, Swagger UI's for ``/docs`` among them (read from disk, no database),
and ``/metrics`` (an overloaded server must still report that it is: its one statement has
a 2 s timeout). Everything else, the API and the pages, counts.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from loadbell.api.loop_lag import LoopLag

# Paths admission lets through, always: exact paths, and prefixes ending in "/".
EXEMPT = ("/healthz", "/api/v1/healthz", "/static/", "/metrics")
# Seconds a refused client should wait: overload is a passing condition, and an admitted
# request is served within well under a second (docs/benchmarks.md, "Overload").
RETRY_AFTER = 1
# Requests in flight from which a late loop refuses: below it, the lateness is not this
# process's own work (other processes took the CPU), and refusing would not help.
LATE_AND_BUSY = 8


def exempt(path: str) -> bool:
    return any(path == p or (p.endswith("/") and path.startswith(p)) for p in EXEMPT)


class Admission:
    def __init__(
        self,
        app: ASGIApp,
        max_in_flight: int,
        lag: LoopLag | None = None,
        max_lag: float = 0.05,
        retry_after: int = RETRY_AFTER,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.lag = lag  # None: the cap alone
        # Seconds the loop may run late. Each request needs a few turns of the loop, so its
        # answer takes a few times this long; a 503 needs one.
        self.max_lag = max_lag
        self.in_flight = 0  # requests admitted and not yet answered
        self._body = orjson.dumps(
            {
                "error": "overloaded",
                "message": "the server is handling as many requests as it can answer "
                f"promptly (at most {max_in_flight} at once), so this one was not started "
                f"and nothing changed; send it again after {retry_after} s (Retry-After)",
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
        if self.in_flight >= self.max_in_flight or (
            self.in_flight >= LATE_AND_BUSY
            and self.lag is not None
            and self.lag.seconds > self.max_lag
        ):
            headers = list(self._headers)
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": self._body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
