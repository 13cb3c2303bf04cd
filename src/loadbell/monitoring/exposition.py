"""Serving the metrics: the token check, the scrape itself, and the small HTTP server of
``loadbell worker --metrics-port`` (``serve`` answers ``GET /metrics`` itself).

A scrape first reads the backlog (one statement, at most :data:`BACKLOG_TIMEOUT` seconds),
then renders the registry in the Prometheus text format. When the database does not
answer in time, the backlog gauges keep their last values, the scrape still answers, and
``loadbell_database_errors_total{where="metrics"}`` counts it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from loadbell.monitoring.registry import Metrics

log = logging.getLogger("loadbell.metrics")

# Seconds the backlog's statement may take before the scrape answers without it: well
# under Prometheus's default scrape timeout (10 s).
BACKLOG_TIMEOUT = 2.0
CONTENT_TYPE = CONTENT_TYPE_LATEST
# pending, due, age of the oldest due delivery (seconds)
BacklogReader = Callable[[], Awaitable[tuple[int, int, float]]]

UNAUTHORIZED = orjson.dumps(
    {
        "error": "unauthorized",
        "message": "the metrics need 'Authorization: Bearer <token>' with the token set in "
        "LOADBELL_METRICS_TOKEN; put it in the scrape config (authorization.credentials)",
        "field": "Authorization",
    }
)


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header may scrape. No token set: anyone may (the port
    should then be firewalled, docs/metrics.md)."""
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    # Compared in constant time: the token is a secret.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


async def scrape(metrics: Metrics, read_backlog: BacklogReader | None) -> bytes:
    """The text a scrape gets: the backlog read afresh, then every metric."""
    if read_backlog is not None:
        try:
            async with asyncio.timeout(BACKLOG_TIMEOUT):
                metrics.backlog(*await read_backlog())
        except Exception as exc:
            metrics.database_error("metrics")
            log.warning("metrics: the backlog could not be read: %s: %s", type(exc).__name__, exc)
    return generate_latest(metrics.registry)


class MetricsServer:
    """``GET /metrics`` on its own port, for a process without an API (``loadbell worker``)."""

    def __init__(
        self,
        metrics: Metrics,
        read_backlog: BacklogReader | None,
        *,
        host: str,
        port: int,
        token: str | None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.metrics, self.read_backlog = metrics, read_backlog
        self._on_close = on_close  # e.g. dispose of the backlog's engine
        self.host, self.port, self.token = host, port, token
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        if not authorized(request.headers.get("Authorization"), self.token):
            return web.Response(
                body=UNAUTHORIZED,
                status=401,
                content_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )
        body = await scrape(self.metrics, self.read_backlog)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._on_close is not None:
            await self._on_close()
