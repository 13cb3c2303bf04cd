"""The ``loadbell`` command line. Every option shows its environment variable in --help."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import click

from loadbell import __version__
from loadbell.settings import Settings


def _settings(**overrides: Any) -> Settings:
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except Exception as exc:  # pydantic's ValidationError, shown as a usage error
        raise click.UsageError(str(exc)) from None


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


database_option = click.option(
    "--database-url",
    envvar="LOADBELL_DATABASE_URL",
    show_envvar=True,
    default=None,
    help="Database URL. Default: sqlite:///./loadbell.db",
)


@click.group()
@click.version_option(__version__, prog_name="loadbell")
def main() -> None:
    """loadbell: notifications for load tests."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


async def _prepare(settings: Settings, *, migrate_sqlite: bool) -> str | None:
    """Bring the schema up to date (SQLite) and seed an empty database.

    Returns the first owner token when one was just created.
    """
    from loadbell.store import accounts, migrate
    from loadbell.store.db import create_engine

    engine = create_engine(settings)
    try:
        if settings.is_sqlite and migrate_sqlite:
            await migrate.upgrade(engine)
        elif not await migrate.is_current(engine):
            raise click.ClickException(
                "the database schema is not up to date; run `loadbell migrate` first"
            )
        async with engine.begin() as conn:
            if await accounts.is_empty(conn):
                return await accounts.bootstrap(conn)
        return None
    finally:
        await engine.dispose()


@main.command()
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
@database_option
def serve(
    host: str,
    port: int,
    no_worker: bool,
    allow_private_targets: bool | None,
    database_url: str | None,
) -> None:
    """Run the API, the web pages and (unless --no-worker) the delivery worker."""
    import uvicorn

    from loadbell.app import create_app

    settings = _settings(database_url=database_url, allow_private_targets=allow_private_targets)
    token = _run(_prepare(settings, migrate_sqlite=True))
    if token:
        click.echo("Created 'Default Organization', 'Default Project' and an owner.")
        click.echo("Owner API token (shown once, keep it safe):")
        click.echo(f"  {token}")
    click.echo(f"loadbell {__version__} on http://{host}:{port} (API docs at /docs)")
    uvicorn.run(
        create_app(settings, run_worker=not no_worker),
        host=host,
        port=port,
        log_level="info",
        loop="auto",
        access_log=False,
    )


@main.command()
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
    settings = _settings(database_url=database_url, allow_private_targets=allow_private_targets)
    _run(_work(settings))


async def _work(settings: Settings) -> None:
    from loadbell.delivery.wakeup import Wakeup
    from loadbell.delivery.worker import Worker
    from loadbell.security.secretbox import SecretBox
    from loadbell.store import migrate
    from loadbell.store.db import create_engine

    engine = create_engine(settings)
    if not await migrate.is_current(engine):
        await engine.dispose()
        raise click.ClickException("the database schema is not up to date; run `loadbell migrate`")
    wakeup = Wakeup()
    if not settings.is_sqlite:
        await wakeup.listen_postgres(settings.database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    box = SecretBox.from_settings(settings.secret_key, settings.secret_key_file)
    w = Worker(engine, box, settings, wakeup)
    click.echo(f"loadbell worker {w.name} started", err=True)
    try:
        await w.run(stop)
    finally:
        await wakeup.close()
        await engine.dispose()


@main.command()
@database_option
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema."""
    from loadbell.store import migrate as m
    from loadbell.store.db import create_engine

    settings = _settings(database_url=database_url)

    async def go() -> None:
        engine = create_engine(settings)
        try:
            await m.upgrade(engine)
        finally:
            await engine.dispose()

    _run(go())
    click.echo("database is up to date", err=True)


@main.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.option(
    "--org",
    "org_id",
    type=int,
    default=None,
    help="Organization id. Default: the first organization.",
)
@click.option(
    "--role",
    type=click.Choice(["owner", "admin", "member"]),
    default="member",
    show_default=True,
    help="Role of the token's service user.",
)
@click.option("--name", default="api token", show_default=True, help="A label for the token.")
@database_option
def token_create(org_id: int | None, role: str, name: str, database_url: str | None) -> None:
    """Create a token and print only the token, so scripts can capture it."""
    import sqlalchemy as sa

    from loadbell.domain.roles import Role
    from loadbell.store import accounts
    from loadbell.store.db import create_engine
    from loadbell.store.tables import organizations

    settings = _settings(database_url=database_url)

    async def go() -> str:
        first = await _prepare(settings, migrate_sqlite=True)
        if first:
            click.echo("note: created the default organization on this empty database", err=True)
        engine = create_engine(settings)
        try:
            async with engine.begin() as conn:
                target = org_id
                if target is None:
                    target = (
                        await conn.execute(sa.select(sa.func.min(organizations.c.id)))
                    ).scalar()
                try:
                    return await accounts.service_token(conn, int(target), Role(role), name)
                except LookupError as exc:
                    raise click.ClickException(
                        f"{exc}; list them with GET /api/v1/organizations"
                    ) from None
        finally:
            await engine.dispose()

    click.echo(_run(go()))


@main.command()
@click.option("--port", default=9000, show_default=True, type=int, help="Port on 127.0.0.1.")
@click.option("--status", default=200, show_default=True, type=int, help="Status to answer.")
def receiver(port: int, status: int) -> None:
    """Run a local receiver that prints every request (to see what loadbell sends)."""
    from loadbell.testing.receiver import serve_forever

    try:
        _run(serve_forever(port, status))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
