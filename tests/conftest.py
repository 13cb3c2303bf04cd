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
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.api.http_protocol import OneWriteHttp
from loadbell.app import create_app
from loadbell.settings import Settings
from loadbell.store import accounts, migrate
from loadbell.store.db import create_engine
from loadbell.store.tables import metadata
from loadbell.testing import RecordingReceiver
from pg_server import PgServer, PgUnavailable

PG_ADMIN_URL = os.environ.get(
    "LOADBELL_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Admission by event-loop lag off, for every Settings of the tests and every loadbell they
# start: an in-process server shares its loop with the test's own work, and on a loaded
# machine any process's loop runs late now and then. tests/api/test_admission_lag.py
# turns it on where it is the subject.
NO_LAG_GATE = {"LOADBELL_MAX_LOOP_LAG_MS": "0"}
os.environ.update(NO_LAG_GATE)


async def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Wait for ``check()`` (sync or async) to return something true; return it."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


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


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the test's database, seeded with its owner and the default organization
    and project (a test file may define its own ``engine`` instead)."""
    await seed(settings)
    eng = create_engine(settings)
    yield eng
    await eng.dispose()


async def start_server(
    settings: Settings, *, run_worker: bool = True, app: Any = None, http: Any = OneWriteHttp
) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    """Serve ``app`` (default: ``create_app(settings)``) on 127.0.0.1 in this event loop, with
    ``http`` as uvicorn's protocol (default: the one `loadbell serve` uses, so every API
    test's answers go through it)."""
    app = app if app is not None else create_app(settings, run_worker=run_worker)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=http, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
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


async def stage_runs(api: httpx.AsyncClient, count: int, name: str = "backlog") -> None:
    """``count`` runs that each start and finish: two events, each to every subscribed
    channel (so ``count`` x 2 x channels deliveries; without a worker they stay pending)."""
    gate = asyncio.Semaphore(8)  # requests at once: enough to stage fast, not a flood

    async def one(i: int) -> None:
        async with gate:
            r = await api.post("/runs", json={"project_id": 1, "load_test_name": f"{name}{i % 5}"})
            assert r.status_code == 201, r.text
            for status in (2, 3):  # Running, then Finished
                r = await api.patch(f"/runs/{r.json()['id']}", json={"status": status})
                assert r.status_code == 200, r.text

    await asyncio.gather(*(one(i) for i in range(count)))


# -- loadbell as a real subprocess ---------------------------------------------------------

LOADBELL_BIN = str(Path(sys.executable).with_name("loadbell"))


@dataclass
class LoadbellProcess:
    """A running ``loadbell`` command whose stdout and stderr are collected line by line."""

    proc: asyncio.subprocess.Process
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return "stdout:\n" + "".join(self.stdout) + "stderr:\n" + "".join(self.stderr)

    async def wait_for_line(
        self, needle: str, *, stream: str = "stderr", timeout: float = 20
    ) -> str:
        """The first line of ``stream`` containing ``needle``; fails if the process exits or
        ``timeout`` seconds pass first."""
        lines = self.stdout if stream == "stdout" else self.stderr
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for line in lines:
                if needle in line:
                    return line
            if self.proc.returncode is not None and all(r.done() for r in self.readers):
                raise AssertionError(f"loadbell exited before printing {needle!r}\n{self.output()}")
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no {needle!r} within {timeout} s\n{self.output()}")
            await asyncio.sleep(0.02)

    async def finish(self, timeout: float = 20) -> int:
        """Wait for the process to exit and its output to be read; return the exit code."""
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait_for(asyncio.gather(*self.readers), timeout)
        return code

    async def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds."""
        if self.proc.returncode is None:
            self.proc.terminate()
        try:
            return await self.finish(timeout)
        except TimeoutError:
            self.proc.kill()
            return await self.finish(timeout)


SpawnLoadbell = Callable[..., Awaitable[LoadbellProcess]]


@pytest.fixture
async def spawn_loadbell(tmp_path: Path) -> AsyncIterator[SpawnLoadbell]:
    """Start ``loadbell <args>`` in ``tmp_path`` (or ``cwd``) with only the given LOADBELL_*
    variables; every process still running at teardown is killed."""
    started: list[LoadbellProcess] = []

    async def spawn(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> LoadbellProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LOADBELL_")}
        clean.update({"PYTHONUNBUFFERED": "1", **NO_LAG_GATE, **(env or {})})
        proc = await asyncio.create_subprocess_exec(
            LOADBELL_BIN,
            *args,
            cwd=cwd or tmp_path,
            env=clean,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        handle = LoadbellProcess(proc)

        async def collect(pipe: asyncio.StreamReader | None, into: list[str]) -> None:
            assert pipe is not None
            while line := await pipe.readline():
                into.append(line.decode(errors="replace"))

        handle.readers = [
            asyncio.create_task(collect(proc.stdout, handle.stdout)),
            asyncio.create_task(collect(proc.stderr, handle.stderr)),
        ]
        started.append(handle)
        return handle

    yield spawn
    for handle in started:
        if handle.proc.returncode is None:
            handle.proc.kill()
        await handle.finish()


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a ``loadbell`` subprocess needs to share ``settings``' database."""
    env = {
        "LOADBELL_DATABASE_URL": settings.database_url,
        "LOADBELL_SECRET_KEY": settings.secret_key or "",
        "LOADBELL_ALLOW_PRIVATE_TARGETS": "1" if settings.allow_private_targets else "0",
    }
    env.update(extra)
    return env


# -- a PostgreSQL server of the test's own ---------------------------------------------------


@pytest.fixture
async def pg_server() -> AsyncIterator[PgServer]:
    """A fresh PostgreSQL server that the test may stop and start (see pg_server.py); it is
    stopped and removed afterwards, whatever happened. Missing binaries skip the test with a
    reason; under ``CI=true`` they fail it."""
    try:
        server = await PgServer.create()
    except PgUnavailable as exc:
        if IN_CI:
            pytest.fail(f"a private PostgreSQL server must start under CI: {exc}")
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        await server.destroy()
