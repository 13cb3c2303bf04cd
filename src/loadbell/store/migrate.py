"""Run Alembic migrations programmatically, on an async engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(conn: Connection, revision: str) -> list[str]:
    before = MigrationContext.configure(conn).get_current_revision()
    command.upgrade(_config(conn), revision)
    after = MigrationContext.configure(conn).get_current_revision()
    if after == before:
        return []
    script = ScriptDirectory.from_config(_config())
    # iterate_revisions walks from ``after`` down to (not including) ``before``.
    walked = script.iterate_revisions(after, before)
    return [rev.revision for rev in reversed(list(walked)) if rev is not None]


async def upgrade(engine: AsyncEngine, revision: str = "head") -> list[str]:
    """Bring the schema to ``revision``; the revisions applied, oldest first ([]: none)."""
    async with engine.begin() as conn:
        return await conn.run_sync(_upgrade, revision)


async def current(engine: AsyncEngine) -> str | None:
    """The database's revision (None: no schema yet)."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def _is_current(conn: Connection) -> bool:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    current = MigrationContext.configure(conn).get_current_revision()
    return current == head


async def is_current(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return await conn.run_sync(_is_current)


def revisions() -> list[str]:
    """Every revision this loadbell knows, oldest first (the last is the head)."""
    script = ScriptDirectory.from_config(_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _downgrade(conn: Connection, revision: str) -> None:
    command.downgrade(_config(conn), revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Take the schema back to ``revision`` (tests; no command offers it)."""
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade, revision)
