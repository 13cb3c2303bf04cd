"""The ASGI application: ``create_app(settings)`` builds everything; nothing runs at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI

from loadbell import __version__, web
from loadbell.api import (
    channels,
    deliveries,
    errors,
    events,
    health,
    inbound,
    load_tests,
    metrics,
    mutes,
    openapi,
    organizations,
    previews,
    projects,
    reports,
    runs,
    schemas,
    slack,
)
from loadbell.api.admission import Admission
from loadbell.api.direct import Direct
from loadbell.api.disconnects import ClientGone, client_present, dropped
from loadbell.api.due_backlog import DueBacklog
from loadbell.api.edge import Edge
from loadbell.api.loop_lag import LoopLag
from loadbell.api.state import AppState
from loadbell.delivery.disabling import Announcer
from loadbell.delivery.pruning import Pruning
from loadbell.delivery.wakeup import Wakeup
from loadbell.delivery.worker import Worker
from loadbell.monitoring.registry import STOPPED, Metrics, process_name
from loadbell.services.secret_keys import open_box
from loadbell.settings import Settings
from loadbell.store.db import create_engine, fill_pool, slow_reader
from loadbell.store.queue import queue_for

if TYPE_CHECKING:
    from loadbell.delivery.child import WorkerChild

API_PREFIX = "/api/v1"
log = logging.getLogger(__name__)


def _worker_ended(task: asyncio.Task[None]) -> None:
    """The worker of ``serve`` stopped before the server did: say why (/healthz says so)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the delivery worker stopped: %s", task.exception())


def create_app(
    settings: Settings,
    *,
    run_worker: bool = True,
    worker_child: WorkerChild | None = None,
    fill: bool = False,
) -> FastAPI:
    """The app. ``run_worker``: a delivery worker in this process's loop (the in-process
    handoff). ``worker_child``: the worker in a process of its own instead, started and
    stopped with the app (``serve``'s default, delivery/child.py). ``fill``: open the
    database pool's connections before serving (``serve``; store/db.py: fill_pool)."""
    run_worker = run_worker and worker_child is None
    # Watched while the app runs: admission refuses while the loop runs late.
    lag = LoopLag() if settings.max_loop_lag_ms else None
    # And while more deliveries are due than the workers can catch up on, changes are refused.
    backlog = DueBacklog(settings.max_due_backlog) if settings.max_due_backlog else None
    # This process's metrics: the API's and its worker's (docs/metrics.md).
    figures = Metrics(process_name("serve"))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        slow = slow_reader(settings, engine)
        wakeup = Wakeup()
        # The CLI checked the key already (one line, no traceback); this check is for
        # apps built by other means, and stores the check value on a fresh database.
        box = await open_box(engine, settings.secret_key, settings.secret_key_file)
        if fill:
            await fill_pool(engine)
        worker = (
            Worker(
                queue_for(settings),
                box,
                settings,
                wakeup,
                metrics=figures,
                pruning=Pruning(engine, settings),
                announcer=Announcer(engine, box, settings, wakeup),
            )
            if run_worker
            else None
        )
        app.state.loadbell = AppState(
            settings=settings,
            engine=engine,
            box=box,
            wakeup=wakeup,
            worker=worker,
            metrics=figures,
            slow=slow,
        )
        stop = asyncio.Event()
        if lag is not None:
            lag.start()
        if backlog is not None:
            backlog.start(engine)
        app.state.worker_task = None
        app.state.worker_child = worker_child
        if worker_child is not None:
            await worker_child.start()
            wakeup.relay_to(worker_child.poke)
        if worker is not None:
            if not settings.is_sqlite:
                await wakeup.listen_postgres(settings.database_url)
            app.state.worker_task = asyncio.create_task(worker.run(stop), name="loadbell-worker")
            app.state.worker_task.add_done_callback(_worker_ended)
            task, running = app.state.worker_task, worker
            figures.watch_worker(lambda: STOPPED if task.done() else running.state())
        try:
            yield
        finally:
            if lag is not None:
                await lag.stop()
            if backlog is not None:
                await backlog.stop()
            stop.set()
            if app.state.worker_task is not None:
                with contextlib.suppress(Exception):  # logged when it ended
                    await app.state.worker_task
            if worker_child is not None:
                await worker_child.stop()
            await wakeup.close()
            if slow.sync_engine.pool is not engine.sync_engine.pool:  # SQLite: its own
                await slow.dispose()
            await engine.dispose()

    app = FastAPI(
        title="loadbell",
        version=__version__,
        description="Notifications for load tests: runs, events, channels and durable delivery.",
        lifespan=lifespan,
        # /docs is web/api_docs.py: Swagger UI from our own static files, never a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    errors.install(app)
    app.add_exception_handler(ClientGone, dropped)
    # Every API call first checks that its client is still there (api/disconnects.py).
    present = [Depends(client_present)]
    # Run updates first, and not in the document a second time: a load test's client sends
    # them at a high rate, and the router tries routes in order, a regular expression each,
    # so the routes of the three routers ahead of runs cost every run update their tries
    # (docs/benchmarks.md, "The API path"). The routes below answer nothing differently:
    # no other router has a path under /runs. The document lists them below, in its order.
    app.include_router(
        runs.router, prefix=API_PREFIX, dependencies=present, include_in_schema=False
    )
    for module in (
        organizations,
        projects,
        load_tests,
        runs,
        reports,
        channels,
        previews,
        slack,
        deliveries,
        events,
        schemas,
        mutes,
        inbound,
    ):
        app.include_router(module.router, prefix=API_PREFIX, dependencies=present)
    # Grafana Cloud k6 posts here with the token in the path, not a bearer token.
    app.include_router(inbound.public, prefix=API_PREFIX, dependencies=present)
    app.include_router(health.router)  # /healthz for load balancers and probes
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(metrics.router)  # /metrics for Prometheus
    openapi.install(app)  # links from each create to the operations on what it made
    web.install(app)  # the pages, at / (sign in, integrations, runs, deliveries, members)
    # loadbell's own work around every request, in one layer (api/edge.py): metrics, the
    # request id, admission, the body limit and the JSON guard, in that order.
    app.add_middleware(
        Edge,
        metrics=figures,
        api_prefix=API_PREFIX,
        admission=Admission(
            max_in_flight=settings.max_in_flight,
            lag=lag,
            max_lag=settings.max_loop_lag_ms / 1000,
            backlog=backlog,
        ),
        max_body_bytes=settings.max_body_bytes,
        access_log=settings.access_log,
        # The run update, past the framework's layers between the edge and its route.
        direct=Direct([runs.direct_update(API_PREFIX)]),
    )
    return app
