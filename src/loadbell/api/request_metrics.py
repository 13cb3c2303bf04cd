"""API requests in the metrics: a count by method, route template and status, and a
latency histogram (``loadbell_http_requests_total``, ``..._duration_seconds``).

The route is the template the router matched (``/api/v1/runs/{run_id}``: Starlette's
``scope["route"]`` with the API prefix it was included under), never the raw path, so the
number of series is bounded by the number of routes whatever clients send.
A request answered before routing (admission's 503, the body limit's 413) or matching no
route (404) is ``route="unrouted"``; a method the API does not use is ``method="other"``.

The outermost middleware: its time covers everything the process does for a request,
admission included, until the last byte of the answer is handed to the server.
``/metrics`` is counted like any route (it shows how often Prometheus scrapes).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loadbell.monitoring.registry import Metrics

UNROUTED = "unrouted"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics, api_prefix: str) -> None:
        self.app = app
        self.metrics = metrics
        # The router's route says its path without the prefix it was included under;
        # every prefixed route is an API route under this one prefix (app.py).
        self.api_prefix = api_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if nothing else did

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router writes the route it matched into the scope it was given (this
            # same dict): read it once the answer is out.
            route = getattr(scope.get("route"), "path", None) or UNROUTED
            if (
                route is not UNROUTED
                and scope["path"].startswith(self.api_prefix + "/")
                and not route.startswith(self.api_prefix + "/")
            ):
                route = self.api_prefix + route
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.request(method, route, status, time.perf_counter() - started)
