"""Scratch databases for one benchmark phase: a SQLite file, or a PostgreSQL database that is
created before and dropped after (``LOADBELL_BENCH_PG_URL`` names the server)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Collection
from pathlib import Path

import sqlalchemy as sa

from loadbell.settings import Settings
from loadbell.store import accounts, migrate
from loadbell.store.db import create_engine

PG_ADMIN_URL = os.environ.get(
    "LOADBELL_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


@contextlib.asynccontextmanager
async def scratch_database(
    backend: str, workdir: Path, label: str, *, keep: bool = False
) -> AsyncIterator[str]:
    """Yield the URL of an empty, migrated database; drop it afterwards unless ``keep``."""
    if backend == "sqlite":
        path = workdir / f"{label}.db"
        url = f"sqlite+aiosqlite:///{path}"
        await _migrate(url)
        yield url
        return
    import asyncpg

    name = f"loadbell_bench_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = PG_ADMIN_URL.replace("+asyncpg", "")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        await _migrate(url)
        yield url
    finally:
        if not keep:
            await _drop(admin, name)


async def drop_database(url: str) -> None:
    """Drop a PostgreSQL database that ``scratch_database(..., keep=True)`` left."""
    await _drop(PG_ADMIN_URL.replace("+asyncpg", ""), url.rsplit("/", 1)[1])


async def _drop(admin: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    engine = create_engine(Settings(database_url=url))
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


async def seed(settings: Settings) -> str:
    """The first organization, project and owner; returns the owner's API token."""
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            return await accounts.bootstrap(conn)
    finally:
        await engine.dispose()


async def server_version(settings: Settings) -> str:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            if settings.is_sqlite:
                version = (await conn.execute(sa.text("SELECT sqlite_version()"))).scalar()
                return f"SQLite {version}"
            version = (await conn.execute(sa.text("SHOW server_version"))).scalar()
            return f"PostgreSQL {version}"
    finally:
        await engine.dispose()


def server_cpu(url: str, exclude: Collection[int] = ()) -> float:
    """CPU seconds (user + system) used so far by the PostgreSQL server processes connected
    to ``url``'s database, but those in ``exclude``, found by their process titles
    (``postgres: user dbname ...``) in /proc; 0 for SQLite, or when the server runs
    elsewhere. Backends that exited are not counted: read it while the connections are
    still open."""
    if not url.startswith("postgresql"):
        return 0.0
    name = url.rsplit("/", 1)[-1].split("?")[0]
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in exclude:
            continue
        try:
            title = (proc / "cmdline").read_bytes()
            if not title.startswith(b"postgres:") or f" {name} ".encode() not in title:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
