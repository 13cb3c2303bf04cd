"""Commands that run loadbell: `serve`, `worker` and `migrate`."""

from __future__ import annotations

import asyncio
import signal

import click

from loadbell import __version__
from loadbell.cli.common import (
    database_option,
    make_settings,
    open_box_or_exit,
    prepare_database,
    run_coroutine,
)
from loadbell.runtime import settle_heap
from loadbell.settings import Settings


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
    token = run_coroutine(prepare_database(settings, migrate_sqlite=True, check_key=True))
    if token:
        click.echo("Created 'Default Organization', 'Default Project' and an owner.")
        click.echo("Owner API token (shown once, keep it safe):")
        click.echo(f"  {token}")
    click.echo(f"loadbell {__version__} on http://{host}:{port} (API docs at /docs)")
    app = create_app(settings, run_worker=not no_worker)
    settle_heap()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        loop="auto",
        access_log=False,
    )


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
        box = await open_box_or_exit(engine, settings)
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
    # Pruning (delivery/pruning.py) runs on an engine of its own: one connection at a time,
    # and no checkpoints on SQLite (`serve` does them).
    pruning = create_engine(settings, checkpoints=False, pool_size=1, max_overflow=1)
    w = Worker(queue_for(settings), box, settings, wakeup, pruning=Pruning(pruning, settings))
    settle_heap()
    click.echo(f"loadbell worker {w.name} started", err=True)
    try:
        await w.run(stop)
    except SideTaskFailed as exc:
        raise click.ClickException(f"the worker stopped: {exc}") from None
    finally:
        await wakeup.close()
        await pruning.dispose()


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
            await m.upgrade(engine)
            click.echo("database is up to date", err=True)
            if has_key:
                await open_box_or_exit(engine, settings)
        finally:
            await engine.dispose()

    run_coroutine(go())
