"""The ``loadbell`` command line, run as real subprocesses in a scratch directory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import click
import httpx
import pytest
from click.testing import CliRunner

from conftest import (
    PG_ADMIN_URL,
    LoadbellProcess,
    SpawnLoadbell,
    free_port,
    start_server,
    webhook_channel,
)
from loadbell.cli import main
from loadbell.settings import Settings
from loadbell.store import migrate
from loadbell.store.db import create_engine
from loadbell.testing import RecordingReceiver

BOOTSTRAP_LINE = "Owner API token"


def _api(port: int, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


async def _serve(spawn: SpawnLoadbell, *args: str) -> tuple[LoadbellProcess, int]:
    """``loadbell serve`` on a free port, returned once /healthz answers."""
    port = free_port()
    proc = await spawn("serve", "--port", str(port), *args)
    await proc.wait_for_line(f"on http://127.0.0.1:{port}", stream="stdout")
    async with httpx.AsyncClient() as client:
        for _ in range(400):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return proc, port
            except httpx.TransportError:
                pass
            assert proc.proc.returncode is None, proc.output()
            await asyncio.sleep(0.05)
    raise AssertionError(f"loadbell serve never became healthy\n{proc.output()}")


def _owner_token(proc: LoadbellProcess) -> str:
    """The token ``serve`` printed under its bootstrap notice (the only line with lb_)."""
    tokens = [line.strip() for line in proc.stdout if line.strip().startswith("lb_")]
    assert len(tokens) == 1, proc.output()
    return tokens[0]


async def test_serve_bootstraps_empty_database_once(
    spawn_loadbell: SpawnLoadbell, tmp_path: Path, receiver: RecordingReceiver
) -> None:
    """On an empty directory `loadbell serve` migrates, seeds the defaults and prints a working
    owner token, then refuses a 127.0.0.1 webhook (no --allow-private-targets) with an error
    naming the flag; a second start on the same database prints no token."""
    first, port = await _serve(spawn_loadbell)
    assert any(BOOTSTRAP_LINE in line for line in first.stdout), first.output()
    token = _owner_token(first)
    async with _api(port, token) as api:
        orgs = (await api.get("/organizations")).json()["items"]
        assert [(o["name"], o["role"]) for o in orgs] == [("Default Organization", "owner")]
        projects = (await api.get("/projects")).json()["items"]
        assert [p["name"] for p in projects] == ["Default Project"]

        r = await api.post("/channels", json=webhook_channel(f"{receiver.url}/hook"))
        assert r.status_code == 201, r.text
        sent = (await api.post(f"/channels/{r.json()['id']}/test")).json()
        assert sent["ok"] is False and sent["outcome"] == "failed", sent
        assert "--allow-private-targets" in sent["error"], sent
        assert "LOADBELL_ALLOW_PRIVATE_TARGETS=1" in sent["error"], sent
        assert receiver.requests == []
    await first.stop()
    assert (tmp_path / "loadbell.db").is_file() and (tmp_path / "loadbell.key").is_file()

    second, port = await _serve(spawn_loadbell)
    assert not any(BOOTSTRAP_LINE in line or "lb_" in line for line in second.stdout)
    async with _api(port, token) as api:
        assert (await api.get("/organizations")).status_code == 200
    await second.stop()


async def test_token_create_prints_only_the_token(
    spawn_loadbell: SpawnLoadbell, tmp_path: Path
) -> None:
    """`loadbell token create --init` prints exactly one line, the token, on stdout; the token
    has the requested role; an unknown --org fails with a message that says what to do."""
    made = await spawn_loadbell("token", "create", "--init", "--role", "member", "--name", "ci")
    assert await made.finish() == 0, made.output()
    assert len(made.stdout) == 1 and made.stdout[0].startswith("lb_"), made.output()
    token = made.stdout[0].strip()

    missing = await spawn_loadbell("token", "create", "--org", "999")
    assert await missing.finish() != 0
    assert missing.stdout == []
    message = "".join(missing.stderr)
    assert "organization 999 does not exist" in message and "/organizations" in message

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'loadbell.db'}",
        secret_key_file=tmp_path / "loadbell.key",
    )
    server, serving, url = await start_server(settings, run_worker=False)
    try:
        async with httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}
        ) as api:
            orgs = (await api.get("/organizations")).json()["items"]
            assert [(o["name"], o["role"]) for o in orgs] == [("Default Organization", "member")]
            r = await api.post("/channels", json=webhook_channel("http://127.0.0.1:9/hook"))
            assert r.status_code == 403, r.text
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def fresh_pg(pg_database: str) -> AsyncIterator[str]:
    """An empty PostgreSQL database (no schema), dropped afterwards."""
    name = f"loadbell_cli_{uuid.uuid4().hex[:8]}"
    admin = PG_ADMIN_URL.replace("+asyncpg", "")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        # Plain postgresql:// on purpose: the form users copy from elsewhere.
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def test_worker_refuses_unmigrated_postgres_until_migrate(
    spawn_loadbell: SpawnLoadbell, fresh_pg: str
) -> None:
    """`loadbell worker` refuses an unmigrated PostgreSQL database and says to run `loadbell
    migrate`; `loadbell migrate` (given a plain postgresql:// URL) brings it to the head."""
    env = {"LOADBELL_DATABASE_URL": fresh_pg, "LOADBELL_SECRET_KEY": "k"}
    refused = await spawn_loadbell("worker", env=env)
    assert await refused.finish() != 0
    assert "run `loadbell migrate`" in "".join(refused.stderr), refused.output()

    migrated = await spawn_loadbell("migrate", env=env)
    assert await migrated.finish() == 0, migrated.output()
    engine = create_engine(Settings(database_url=fresh_pg))
    try:
        assert await migrate.is_current(engine)
    finally:
        await engine.dispose()


async def test_worker_refuses_unmigrated_sqlite(spawn_loadbell: SpawnLoadbell) -> None:
    """`loadbell worker` on a directory without a database refuses and says to run `loadbell
    migrate` (only `serve` migrates SQLite by itself)."""
    refused = await spawn_loadbell("worker")
    assert await refused.finish() != 0
    assert "run `loadbell migrate`" in "".join(refused.stderr), refused.output()


@pytest.mark.parametrize(
    ("command", "env_vars"),
    [
        # serve: every flag a deployment may set through its environment
        (
            "serve",
            {
                "LOADBELL_DATABASE_URL",
                "LOADBELL_ALLOW_PRIVATE_TARGETS",
                "LOADBELL_HOST",
                "LOADBELL_PORT",
                "LOADBELL_NO_WORKER",
                "LOADBELL_SERVE_WORKER",
                "LOADBELL_MAX_IN_FLIGHT",
            },
        ),
        # worker: where the database is, whether private targets are allowed, its metrics port
        (
            "worker",
            {"LOADBELL_DATABASE_URL", "LOADBELL_ALLOW_PRIVATE_TARGETS", "LOADBELL_METRICS_PORT"},
        ),
        # migrate: only the database
        ("migrate", {"LOADBELL_DATABASE_URL"}),
        # prune and backup: what to remove, how, and whether to replace the copy
        (
            "prune",
            {
                "LOADBELL_DATABASE_URL",
                "LOADBELL_PRUNE_OLDER_THAN",
                "LOADBELL_PRUNE_DRY_RUN",
                "LOADBELL_PRUNE_BATCH",
            },
        ),
        ("backup", {"LOADBELL_DATABASE_URL", "LOADBELL_BACKUP_FORCE"}),
    ],
)
def test_help_shows_environment_variables(command: str, env_vars: set[str]) -> None:
    """`--help` names the environment variable of every option of serve, worker, migrate,
    prune and backup."""
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    for name in env_vars:
        assert name in result.output, name
    params = main.commands[command].params
    options = [p for p in params if p.name != "help" and not isinstance(p, click.Argument)]
    assert {str(p.envvar) for p in options} == env_vars
    assert all(isinstance(p, click.Option) and p.show_envvar for p in options)


def test_top_level_help_lists_every_command() -> None:
    """Commands load when used, and `loadbell --help` still lists them all with their help."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    for name in ("serve", "worker", "migrate", "keys", "token", "user", "prune", "backup"):
        assert f"  {name} " in result.output, name
    for name in ("receiver", "run", "forward"):
        assert f"  {name} " in result.output, name
    unknown = CliRunner().invoke(main, ["nosuch"])
    assert unknown.exit_code == 2 and "No such command 'nosuch'" in unknown.output


def test_run_starts_without_the_server_stack() -> None:
    """`loadbell run` runs inside load tests, where its start-up is CPU taken from k6: it
    must not import the server's dependencies (0.45 s of CPU here before, 0.08 s after)."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from loadbell.cli import main\n"
        "try:\n"
        "    main(['run', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('fastapi', 'starlette', 'sqlalchemy', 'pydantic', 'aiohttp',\n"
        "         'jinja2', 'uvicorn')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert "Usage: main run" in done.stdout or "Usage: " in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
