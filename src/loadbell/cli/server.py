"""Commands that run loadbell: `serve`, `worker` and `migrate`."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

import click

from loadbell import __version__
from loadbell.cli.common import (
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
    "--no-worker",
    is_flag=True,
    envvar="LOADBELL_NO_WORKER",
    show_envvar=True,
    help="Serve the API only; run `loadbell worker` processes to deliver.",
)
@click.option(
    "--allow-private-targets",
    is_flag=True,
    default=None,
    envvar="LOADBELL_ALLOW_PRIVATE_TARGETS",
    show_envvar=True,
    help="Allow deliveries to private, loopback and link-local addresses.",
)
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
    no_worker: bool,
    allow_private_targets: bool | None,
    max_in_flight: int | None,
    database_url: str | None,
) -> None:
    """Run the API, the web pages and (unless --no-worker) the delivery worker."""
    import uvicorn

    from loadbell.app import create_app

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
    app = create_app(settings, run_worker=not no_worker)
    settle_heap()
    config = uvicorn.Config(app, log_level="info", loop="auto", access_log=False)
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


@click.command()
@click.option(
    "--allow-private-targets",
    is_flag=True,
    default=None,
    envvar="LOADBELL_ALLOW_PRIVATE_TARGETS",
    show_envvar=True,
    help="Allow deliveries to private, loopback and link-local addresses.",
)
@database_option
def worker(allow_private_targets: bool | None, database_url: str | None) -> None:
    """Run a delivery worker (any number may run against one PostgreSQL database)."""
    settings = make_settings(database_url=database_url, allow_private_targets=allow_private_targets)
    run_coroutine(_work(settings))


async def _work(settings: Settings) -> None:
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
    wakeup = Wakeup()
    if not settings.is_sqlite:
        await wakeup.listen_postgres(settings.database_url)
    else:
        await wakeup.watch_sqlite(sqlite_path(settings.database_url))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    w = Worker(queue_for(settings), box, settings, wakeup)
    settle_heap()
    click.echo(f"loadbell worker {w.name} started", err=True)
    if not settings.public_url:
        log.info(
            "links in notifications use %s (the default); set LOADBELL_PUBLIC_URL to the "
            "address people open loadbell at",
            DEFAULT_PUBLIC_URL,
        )
    try:
        await w.run(stop)
    except SideTaskFailed as exc:
        raise click.ClickException(f"the worker stopped: {exc}") from None
    finally:
        await wakeup.close()


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
