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
from collections.abc import Awaitable, Callable, Iterable

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

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


def merge(*expositions: bytes) -> bytes:
    """Several processes' expositions as one (``serve`` and its worker process): a family
    that more than one has appears once, with the samples of all; their ``process`` labels
    keep them apart. Each text goes through the same parser, so a counter's ``_created``
    series is one family whichever process it came from."""
    families: dict[str, Metric] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text.decode()):
            known = families.get(family.name)
            if known is None:
                families[family.name] = family
            else:
                known.samples.extend(family.samples)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families.values()))
    return generate_latest(registry)


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


class MetricsServer:
    """``GET /metrics`` on its own port, for a process without an API (``loadbell worker``)."""

    def __init__(
        self,
        metrics: Metrics,
        read_backlog: BacklogReader | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str | None = None,
        token: str | None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.metrics, self.read_backlog = metrics, read_backlog
        self._on_close = on_close  # e.g. dispose of the backlog's engine
        self.host, self.port, self.token = host, port, token
        self.path = path  # a Unix socket instead of host and port
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
        site: web.BaseSite
        if self.path is not None:
            site = web.UnixSite(self._runner, self.path)
        else:
            site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._on_close is not None:
            await self._on_close()
