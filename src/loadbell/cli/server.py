"""Commands that run loadbell: `serve`, `worker` and `migrate`."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from loadbell import __version__
from loadbell.cli.common import (
    allow_private_option,
    database_option,
    make_settings,
    open_checked_box,
    prepare_database,
    run_coroutine,
)
from loadbell.cli.errors import ListenError
from loadbell.runtime import settle_heap
from loadbell.settings import DEFAULT_PUBLIC_URL, Settings, resolve_public_url

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from loadbell.delivery.wakeup import Wakeup
    from loadbell.delivery.worker import Worker
    from loadbell.monitoring.exposition import MetricsServer


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="LOADBELL_HOST",
    show_envvar=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=int,
    envvar="LOADBELL_PORT",
    show_envvar=True,
    help="Port to listen on.",
)
@click.option(
    "--worker",
    "worker_mode",
    type=click.Choice(["process", "inline", "none"]),
    default="process",
    show_default=True,
    envvar="LOADBELL_SERVE_WORKER",
    show_envvar=True,
    help="Where serve's delivery worker runs: in a process of its own that serve starts, "
    "restarts and stops (process); in serve's own event loop (inline); or nowhere: run "
    "`loadbell worker` processes to deliver (none).",
)
@click.option(
    "--no-worker",
    is_flag=True,
    envvar="LOADBELL_NO_WORKER",
    show_envvar=True,
    help="The same as --worker none.",
)
@allow_private_option
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=None,
    envvar="LOADBELL_MAX_IN_FLIGHT",
    show_envvar=True,
    help="Requests handled at once; past it, 503 with Retry-After at once.  "
    f"[default: {Settings.model_fields['max_in_flight'].default}]",
)
@database_option
def serve(
    host: str,
    port: int,
    worker_mode: str,
    no_worker: bool,
    allow_private_targets: bool | None,
    max_in_flight: int | None,
    database_url: str | None,
) -> None:
    """Run the API, the web pages and (unless --worker none) the delivery worker."""
    import uvicorn

    from loadbell.api.http_protocol import OneWriteHttp
    from loadbell.app import create_app
    from loadbell.delivery.child import WorkerChild

    settings = make_settings(
        database_url=database_url,
        allow_private_targets=allow_private_targets,
        max_in_flight=max_in_flight,
    )
    # The port first: a taken port must stop serve before it creates a database or prints
    # a token. uvicorn serves on this very socket, so nothing can take the port meanwhile.
    listener = listen(host, port)
    port = listener.getsockname()[1]  # --port 0: the port the system chose
    settings = settings.model_copy(
        update={"public_url": resolve_public_url(settings.public_url, (host, port))}
    )
    token = run_coroutine(prepare_database(settings, migrate_sqlite=True, check_key=True))
    if token:
        click.echo("Created 'Default Organization', 'Default Project' and an owner.")
        click.echo("Owner API token (shown once, keep it safe):")
        click.echo(f"  {token}")
    click.echo(f"loadbell {__version__} on http://{host}:{port} (API docs at /docs)")
    if no_worker:
        worker_mode = "none"
    # process: the app starts the worker process once uvicorn starts it, after the
    # database was prepared above, and stops it after uvicorn's graceful stop.
    child = WorkerChild(settings) if worker_mode == "process" else None
    app = create_app(settings, run_worker=worker_mode == "inline", worker_child=child, fill=True)
    settle_heap()
    # uvicorn stops on SIGTERM or SIGINT: it stops accepting, lets the requests under way
    # finish (at most REQUESTS_GRACE seconds), then runs the app's shutdown, which stops
    # the worker cleanly (Worker.run, or the worker process: delivery/child.py).
    # Afterwards it raises the signal again for the handlers that were there before it:
    # these, which let the command end with status 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stopped)
    config = uvicorn.Config(
        app,
        log_level="info",
        log_config=None,  # its loggers propagate to ours (cli/logs.py): one form of line
        loop="auto",
        http=OneWriteHttp,  # uvicorn's httptools protocol, each answer in one write
        access_log=False,  # LOADBELL_ACCESS_LOG: the app logs requests with their ids
        timeout_graceful_shutdown=REQUESTS_GRACE,
    )
    uvicorn.Server(config).run(sockets=[listener])


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (not yet listening; uvicorn starts that), as
    uvicorn would bind it. Raises :class:`ListenError` when the address cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restart may reuse the port of connections still in TIME_WAIT. On
    # Linux this does not let two processes listen on one port.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(host, port, exc) from exc
    return sock


# Seconds the requests under way get to finish on SIGTERM before they are cancelled (their
# transactions roll back): API calls are short, so this only cuts off a stuck one.
REQUESTS_GRACE = 10


def _stopped(signum: int, frame: object) -> None:
    """uvicorn has shut down gracefully after this signal: nothing is left to do."""


@click.command()
@allow_private_option
@click.option(
    "--metrics-port",
    type=click.IntRange(min=1, max=65535),
    default=None,
    envvar="LOADBELL_METRICS_PORT",
    show_envvar=True,
    help="Serve Prometheus metrics at /metrics on this port (on LOADBELL_METRICS_HOST, "
    "default 127.0.0.1; LOADBELL_METRICS_TOKEN protects it).  [default: none]",
)
@database_option
def worker(
    allow_private_targets: bool | None, metrics_port: int | None, database_url: str | None
) -> None:
    """Run a delivery worker (any number may run against one PostgreSQL database)."""
    settings = make_settings(
        database_url=database_url,
        allow_private_targets=allow_private_targets,
        metrics_port=metrics_port,
    )
    run_coroutine(_work(settings))


async def _work(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    wakeup: Wakeup | None = None,
    listen: bool = True,
    metrics_path: str | None = None,
    ready: Callable[[], None] | None = None,
) -> None:
    """Run a delivery worker until SIGTERM, SIGINT or ``stop``. ``serve``'s worker process
    (cli/worker_child.py) passes the ``wakeup`` its pipe pokes, ``listen=False`` (no
    NOTIFY or SQLite watch: see there), serves its metrics on the Unix socket at
    ``metrics_path``, for ``serve`` to merge into its own, and is told through ``ready``
    when the worker is about to start (D72)."""
    from loadbell.delivery.disabling import Announcer
    from loadbell.delivery.pruning import Pruning
    from loadbell.delivery.supervise import SideTaskFailed
    from loadbell.delivery.wakeup import Wakeup
    from loadbell.delivery.worker import Worker
    from loadbell.store import migrate
    from loadbell.store.db import create_engine, sqlite_path
    from loadbell.store.queue import queue_for

    engine = create_engine(settings)
    try:
        if not await migrate.is_current(engine):
            raise click.ClickException(
                "the database schema is not up to date; run `loadbell migrate`"
            )
        box = await open_checked_box(engine, settings)
    finally:
        await engine.dispose()  # the worker's statements run on a connection of its own
    wakeup = wakeup or Wakeup()
    if listen and not settings.is_sqlite:
        await wakeup.listen_postgres(settings.database_url)
    elif listen:
        await wakeup.watch_sqlite(sqlite_path(settings.database_url))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Pruning (delivery/pruning.py) runs on an engine of its own: one connection at a time,
    # and no checkpoints on SQLite (`serve` does them).
    pruning = create_engine(settings, checkpoints=False, pool_size=1, max_overflow=1)
    w = Worker(
        queue_for(settings),
        box,
        settings,
        wakeup,
        pruning=Pruning(pruning, settings),
        announcer=Announcer(pruning, box, settings, wakeup),
    )
    exposition = (
        await _serve_metrics(settings, w, metrics_path)
        if settings.metrics_port or metrics_path
        else None
    )
    settle_heap()
    # A log line, not an echo: with LOADBELL_LOG_FORMAT=json every line on stderr is JSON.
    logging.getLogger("loadbell.worker").info(
        "loadbell worker %s started", w.name, extra={"worker": w.name}
    )
    if not settings.public_url:
        log.info(
            "links in notifications use %s (the default); set LOADBELL_PUBLIC_URL to the "
            "address people open loadbell at",
            DEFAULT_PUBLIC_URL,
        )
    if ready is not None:
        ready()
    try:
        await w.run(stop)
    except SideTaskFailed as exc:
        raise click.ClickException(f"the worker stopped: {exc}") from None
    finally:
        if exposition is not None:
            await exposition.close()
        await wakeup.close()
        await pruning.dispose()


async def _serve_metrics(settings: Settings, w: Worker, path: str | None) -> MetricsServer:
    """The worker's /metrics on LOADBELL_METRICS_HOST:LOADBELL_METRICS_PORT, or on the Unix
    socket at ``path`` for ``serve`` (which reads the backlog itself: no backlog here)."""
    from loadbell.monitoring.exposition import MetricsServer
    from loadbell.store.backlog import read_backlog
    from loadbell.store.db import create_engine, reader

    w.metrics.watch_worker(w.state)
    if path is not None:
        server = MetricsServer(w.metrics, None, path=path, token=None)
        await server.start()
        return server
    # The backlog's one statement at each scrape, on a small pool of its own (the
    # worker's statements run on the queue's connection).
    base = create_engine(settings)
    engine = reader(base)

    async def backlog() -> tuple[int, int, float]:
        async with engine.connect() as conn:
            figures = await read_backlog(conn)
            await conn.rollback()
            return figures

    assert settings.metrics_port is not None
    server = MetricsServer(
        w.metrics,
        backlog,
        host=settings.metrics_host,
        port=settings.metrics_port,
        token=settings.metrics_token,
        on_close=base.dispose,
    )
    try:
        await server.start()
    except OSError as exc:
        await base.dispose()
        raise click.ClickException(
            f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port}: "
            f"{exc.strerror or exc}; choose another --metrics-port"
        ) from None
    click.echo(
        f"loadbell worker metrics on http://{settings.metrics_host}:{settings.metrics_port}"
        "/metrics",
        err=True,
    )
    return server


@click.command()
@database_option
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema."""
    from loadbell.store import migrate as m
    from loadbell.store.db import create_engine

    settings = make_settings(database_url=database_url)

    # With a key at hand, a fresh database gets its check value now; without one, the
    # first `serve` or `worker` stores it (migrate makes no key file).
    has_key = bool(settings.secret_key) or settings.secret_key_file.exists()

    async def go() -> None:
        engine = create_engine(settings)
        try:
            applied = await m.upgrade(engine)
            if applied:
                click.echo(
                    f"applied {' '.join(applied)}; the database is at {applied[-1]}", err=True
                )
            else:
                click.echo(f"already at {await m.current(engine)}, nothing to do", err=True)
            if has_key:
                await open_checked_box(engine, settings)
        finally:
            await engine.dispose()

    run_coroutine(go())
