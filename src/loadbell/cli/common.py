"""What the commands share: settings from options, the event loop, the database option,
the secret-key check and the first-run set-up."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import click

from loadbell.cli import logs
from loadbell.cli.errors import remember_settings
from loadbell.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from loadbell.security.secretbox import SecretBox


def make_settings(**overrides: Any) -> Settings:
    """The settings from the environment and the given options (None: not given); log lines
    take the form they ask for from here on. A bad value raises pydantic's ValidationError,
    which ``cli/errors.py`` shows in one line."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    settings = Settings(**clean)
    remember_settings(settings)
    logs.configure(settings.log_format)
    return settings


def run_coroutine(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


allow_private_option = click.option(
    "--allow-private-targets",
    is_flag=True,
    default=None,
    envvar="LOADBELL_ALLOW_PRIVATE_TARGETS",
    show_envvar=True,
    help="Allow deliveries to private, loopback and link-local addresses.",
)

database_option = click.option(
    "--database-url",
    envvar="LOADBELL_DATABASE_URL",
    show_envvar=True,
    default=None,
    help="Database URL. Default: sqlite:///./loadbell.db",
)


async def open_checked_box(engine: AsyncEngine, settings: Settings) -> SecretBox:
    """The secret key, checked against the database (the check value is stored on a fresh
    one). A key that does not fit raises ``SecretKeyError``, whose one line says what to do
    (``cli/errors.py`` prints it)."""
    from loadbell.services.secret_keys import open_box

    return await open_box(engine, settings.secret_key, settings.secret_key_file)


async def prepare_database(
    settings: Settings, *, migrate_sqlite: bool, check_key: bool = False
) -> str | None:
    """Bring the schema up to date (SQLite), check the secret key (``check_key``) and seed
    an empty database.

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
        if check_key:  # before the first-run set-up: a refused process changes nothing
            await open_checked_box(engine, settings)
        async with engine.begin() as conn:
            if await accounts.is_empty(conn):
                return await accounts.bootstrap(conn)
        return None
    finally:
        await engine.dispose()
