"""Shared fixtures: real SQLite and PostgreSQL, a real server on 127.0.0.1, real receivers.

Every test that takes ``db_url`` (directly or through ``app_server``) runs twice: on
SQLite and on PostgreSQL. Outside CI a missing PostgreSQL skips those runs with a reason;
under ``CI=true`` it fails them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from loadbell.app import create_app
from loadbell.settings import Settings
from loadbell.store import accounts, migrate
from loadbell.store.db import create_engine
from loadbell.store.tables import metadata
from loadbell.testing import RecordingReceiver

PG_ADMIN_URL = os.environ.get(
    "LOADBELL_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_reachable() -> str | None:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL.replace("+asyncpg", ""), timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
        return None
    except Exception as exc:
        return f"{exc.__class__.__name__}: {exc}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    problem = _pg_reachable()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL must be reachable under CI ({PG_ADMIN_URL}): {problem}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {problem}")
    import asyncpg

    name = f"loadbell_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = PG_ADMIN_URL.replace("+asyncpg", "")

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()
        engine = create_engine(Settings(database_url=_pg_url(name)))
        await migrate.upgrade(engine)
        await engine.dispose()

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(create())
    yield _pg_url(name)
    asyncio.run(drop())


def _pg_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"

    async def create() -> None:
        engine = create_engine(Settings(database_url=f"sqlite:///{path}"))
        await migrate.upgrade(engine)
        await engine.dispose()

    asyncio.run(create())
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    if request.param == "sqlite":
        target = tmp_path / "loadbell.db"
        shutil.copy(sqlite_template, target)
        return f"sqlite+aiosqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")
    _truncate_pg(url)
    return url


def _truncate_pg(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)

    async def run() -> None:
        engine = create_engine(Settings(database_url=url))
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await engine.dispose()

    asyncio.run(run())


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        secret_key="test-secret-key",
        secret_key_file=tmp_path / "unused.key",
        allow_private_targets=True,
        public_url="http://loadbell.test",
    )


@dataclass
class Server:
    url: str
    token: str
    settings: Settings
    app: object

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self.url}/api/v1",
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=30,
        )


async def seed(settings: Settings) -> str:
    engine = create_engine(settings)
    async with engine.begin() as conn:
        token = await accounts.bootstrap(conn)
    await engine.dispose()
    return token


async def start_server(
    settings: Settings, *, run_worker: bool = True
) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    app = create_app(settings, run_worker=run_worker)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{port}"


@pytest.fixture
async def app_server(settings: Settings) -> AsyncIterator[Server]:
    """loadbell serve, in this event loop, with its in-process worker."""
    token = await seed(settings)
    server, task, url = await start_server(settings)
    yield Server(url=url, token=token, settings=settings, app=server.config.app)
    server.should_exit = True
    await task


@pytest.fixture
async def api(app_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with app_server.client() as client:
        yield client


@pytest.fixture
async def receiver() -> AsyncIterator[RecordingReceiver]:
    async with RecordingReceiver() as rx:
        yield rx


def webhook_channel(url: str, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "organization_id": 1,
        "project_id": None,
        "kind": "webhook",
        "name": "hook",
        "config": {"url": url, "format": "loadimpact"},
    }
    body.update(extra)
    return body
