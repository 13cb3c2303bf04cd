"""Operational errors of the real ``loadbell`` processes: one or two lines that say what to
do, a non-zero exit and no traceback (unless --debug); `migrate` names what it applied;
`token create` refuses a new database without --init; links use the address `serve`
listens on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import (
    LoadbellProcess,
    SpawnLoadbell,
    free_port,
    webhook_channel,
)
from loadbell.cli.errors import LoadbellGroup, explain
from loadbell.settings import DEFAULT_PUBLIC_URL, resolve_public_url
from loadbell.store import migrate
from loadbell.testing import RecordingReceiver
from test_cli import _api, _owner_token, _serve

# Each command that opens the database, as it is spelled on the command line.
DATABASE_COMMANDS = [
    pytest.param(("serve", "--port", "{port}"), id="serve"),
    pytest.param(("worker",), id="worker"),
    pytest.param(("migrate",), id="migrate"),
    pytest.param(("token", "create", "--init"), id="token-create"),
]


def _args(args: tuple[str, ...]) -> list[str]:
    return [a.replace("{port}", str(free_port())) for a in args]


async def _failed(proc: LoadbellProcess) -> str:
    """The stderr of a process that failed as an operator should see it: non-zero, one or
    two lines, no traceback, nothing on stdout."""
    assert await proc.finish(60) != 0, proc.output()
    assert "Traceback" not in proc.output(), proc.output()
    lines = [line for line in proc.stderr if line.strip()]
    assert 1 <= len(lines) <= 2, proc.output()
    assert proc.stdout == [], proc.output()
    return "".join(lines)


def _files(folder: Path) -> list[str]:
    """What a command left in ``folder``."""
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 where nothing listens (a stopped PostgreSQL): held bound, not
    listening, so no other process can start listening on it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("args", DATABASE_COMMANDS)
async def test_unreachable_postgres_says_start_it(
    spawn_loadbell: SpawnLoadbell, closed_port: int, args: tuple[str, ...]
) -> None:
    """A PostgreSQL that does not answer stops each command with its host and port and
    what to do, without a traceback."""
    env = {
        "LOADBELL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed_port}/loadbell",
        "LOADBELL_SECRET_KEY": "k",
    }
    message = await _failed(await spawn_loadbell(*_args(args), env=env))
    assert f"cannot reach PostgreSQL at 127.0.0.1:{closed_port}" in message, message
    assert "Start PostgreSQL" in message and "LOADBELL_DATABASE_URL" in message, message


@pytest.mark.parametrize("args", DATABASE_COMMANDS)
async def test_missing_postgres_database_says_create_it(
    spawn_loadbell: SpawnLoadbell, pg_database: str, args: tuple[str, ...]
) -> None:
    """A database name the real PostgreSQL does not have stops each command with the name
    and the createdb command that makes it."""
    url = pg_database.rsplit("/", 1)[0] + "/loadbell_no_such_database"
    env = {"LOADBELL_DATABASE_URL": url, "LOADBELL_SECRET_KEY": "k"}
    message = await _failed(await spawn_loadbell(*_args(args), env=env))
    assert '"loadbell_no_such_database"' in message and "does not exist" in message, message
    assert "createdb" in message and "LOADBELL_DATABASE_URL" in message, message


@pytest.mark.parametrize("args", DATABASE_COMMANDS)
async def test_unwritable_sqlite_path_says_which_folder(
    spawn_loadbell: SpawnLoadbell, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """A SQLite path whose folder cannot exist (it is a regular file: this holds for root
    too) stops each command with the path and what to check."""
    (tmp_path / "a-file").write_text("not a folder\n")
    db = tmp_path / "a-file" / "loadbell.db"
    env = {"LOADBELL_DATABASE_URL": f"sqlite:///{db}", "LOADBELL_SECRET_KEY": "k"}
    message = await _failed(await spawn_loadbell(*_args(args), env=env))
    assert f"cannot open the SQLite database {db}" in message, message
    assert f"folder {tmp_path / 'a-file'} exists and is writable" in message, message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://loadbell@db.invalid:port/loadbell",  # a port that is no number
        "mysql://loadbell@127.0.0.1/loadbell",  # a database loadbell does not speak
    ],
)
async def test_malformed_database_url_is_one_line_naming_the_setting(
    spawn_loadbell: SpawnLoadbell, tmp_path: Path, url: str
) -> None:
    """A malformed LOADBELL_DATABASE_URL is one line naming the setting and the forms it
    takes, with no pydantic boilerplate, before anything is created."""
    message = await _failed(await spawn_loadbell("migrate", env={"LOADBELL_DATABASE_URL": url}))
    assert "invalid setting LOADBELL_DATABASE_URL" in message, message
    assert "sqlite:///" in message and "postgresql://" in message, message
    for boilerplate in ("validation error", "pydantic", "type=value_error", "input_value"):
        assert boilerplate not in message, message
    assert _files(tmp_path) == []


async def test_debug_shows_the_traceback(spawn_loadbell: SpawnLoadbell, closed_port: int) -> None:
    """--debug, or LOADBELL_DEBUG=1, shows the traceback of the error instead of the message."""
    env = {"LOADBELL_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed_port}/x"}
    for args, extra in ((("--debug", "migrate"), {}), (("migrate",), {"LOADBELL_DEBUG": "1"})):
        proc = await spawn_loadbell(*args, env={**env, **extra})
        assert await proc.finish(60) != 0, proc.output()
        stderr = "".join(proc.stderr)
        assert "Traceback (most recent call last)" in stderr, proc.output()
        assert "DatabaseUnavailable" in stderr, proc.output()


async def test_serve_on_a_taken_port_creates_and_prints_nothing(
    spawn_loadbell: SpawnLoadbell, tmp_path: Path
) -> None:
    """`serve` on a port another process listens on says so and how to choose another,
    before it creates a database or a key file or prints a token or its banner."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = await _failed(await spawn_loadbell("serve", "--port", str(port)))
    assert f"cannot listen on 127.0.0.1:{port}" in message, message
    assert "already in use" in message and "--port" in message, message
    assert _files(tmp_path) == []


async def test_deleted_key_file_is_never_replaced(
    spawn_loadbell: SpawnLoadbell, tmp_path: Path, receiver: RecordingReceiver
) -> None:
    """With the key file of a database holding secrets deleted, `serve` refuses in one line
    that says to restore it or set LOADBELL_SECRET_KEY, writes no new key and prints no
    banner; with the file restored it starts and the secrets still open."""
    first, port = await _serve(spawn_loadbell, "--allow-private-targets")
    token = _owner_token(first)
    async with _api(port, token) as api:
        r = await api.post("/channels", json=webhook_channel(f"{receiver.url}/hook"))
        assert r.status_code == 201, r.text
        channel = r.json()["id"]
    await first.stop()
    key_file = tmp_path / "loadbell.key"
    key = key_file.read_bytes()
    key_file.unlink()

    message = await _failed(await spawn_loadbell("serve", "--port", str(free_port())))
    assert f"restore the old key file to {key_file}" in message, message
    assert "set LOADBELL_SECRET_KEY" in message and "no key file was written" in message
    assert not key_file.exists()

    key_file.write_bytes(key)
    again, port = await _serve(spawn_loadbell, "--allow-private-targets")
    async with _api(port, token) as api:
        sent = (await api.post(f"/channels/{channel}/test")).json()
        assert sent["ok"] is True, sent
    await again.stop()


async def test_migrate_names_the_revisions_it_applied(
    spawn_loadbell: SpawnLoadbell, tmp_path: Path
) -> None:
    """`loadbell migrate` on a new database lists every revision it applied; run again, it
    says the database is at the head and nothing was done."""
    known = migrate.revisions()
    first = await spawn_loadbell("migrate")
    assert await first.finish(60) == 0, first.output()
    assert first.stderr == [f"applied {' '.join(known)}; the database is at {known[-1]}\n"]
    again = await spawn_loadbell("migrate")
    assert await again.finish(60) == 0, again.output()
    assert again.stderr == [f"already at {known[-1]}, nothing to do\n"], again.output()


async def test_token_create_refuses_a_new_database_without_init(
    spawn_loadbell: SpawnLoadbell, tmp_path: Path
) -> None:
    """`token create` in a folder without a database says which database does not exist
    and to pass --init or set LOADBELL_DATABASE_URL, and creates nothing; after `migrate`
    alone it still refuses (no organization); with --init it makes one."""
    message = await _failed(await spawn_loadbell("token", "create"))
    assert f"the database at {tmp_path / 'loadbell.db'} does not exist" in message, message
    assert "--init" in message and "LOADBELL_DATABASE_URL" in message, message
    assert _files(tmp_path) == []

    migrated = await spawn_loadbell("migrate")
    assert await migrated.finish(60) == 0, migrated.output()
    message = await _failed(await spawn_loadbell("token", "create"))
    assert "no organization yet" in message and "--init" in message, message

    made = await spawn_loadbell("token", "create", "--init")
    assert await made.finish(60) == 0, made.output()
    assert len(made.stdout) == 1 and made.stdout[0].startswith("lb_"), made.output()


async def test_links_use_the_port_serve_listens_on(
    spawn_loadbell: SpawnLoadbell, receiver: RecordingReceiver
) -> None:
    """Without LOADBELL_PUBLIC_URL, a run's notification links to the address `serve`
    listens on, port included."""
    proc, port = await _serve(spawn_loadbell, "--allow-private-targets")
    async with _api(port, _owner_token(proc)) as api:
        channel = webhook_channel(f"{receiver.url}/hook")
        channel["config"] = {"url": f"{receiver.url}/hook", "format": "loadmance"}
        r = await api.post("/channels", json={**channel, "events": ["test.started"]})
        assert r.status_code == 201, r.text
        run = (await api.post("/runs", json={"project_id": 1, "load_test_name": "t"})).json()
        assert (await api.patch(f"/runs/{run['id']}", json={"status": 2})).status_code == 200
    [got] = await receiver.wait_for(1, timeout=60)
    assert f"http://127.0.0.1:{port}/runs/{run['id']}" in got.body.decode(), got.body
    assert run["url"] == f"http://127.0.0.1:{port}/runs/{run['id']}", run
    await proc.stop()


async def test_worker_without_public_url_says_which_links_it_writes(
    spawn_loadbell: SpawnLoadbell,
) -> None:
    """A `loadbell worker` without LOADBELL_PUBLIC_URL logs one line naming the default its
    links use and the setting; with the setting it logs no such line."""
    migrated = await spawn_loadbell("migrate")
    assert await migrated.finish(60) == 0, migrated.output()
    bare = await spawn_loadbell("worker", env={"LOADBELL_SECRET_KEY": "k"})
    line = await bare.wait_for_line("LOADBELL_PUBLIC_URL", timeout=60)
    assert DEFAULT_PUBLIC_URL in line, line
    await bare.stop()
    env = {"LOADBELL_SECRET_KEY": "k", "LOADBELL_PUBLIC_URL": "https://bell.example.com"}
    configured = await spawn_loadbell("worker", env=env)
    await configured.wait_for_line("started", timeout=60)
    await configured.stop()
    assert "LOADBELL_PUBLIC_URL" not in configured.output(), configured.output()


@pytest.mark.parametrize(
    ("configured", "listen", "expected"),
    [
        # the setting wins, whatever serve listens on (a trailing slash dropped)
        ("https://bell.example.com/", ("127.0.0.1", 18080), "https://bell.example.com"),
        # unset: the address serve listens on
        (None, ("127.0.0.1", 18080), "http://127.0.0.1:18080"),
        (None, ("localhost", 9000), "http://localhost:9000"),
        # an IPv6 address goes in brackets
        (None, ("::1", 8080), "http://[::1]:8080"),
        # every interface: this machine's host name, which others can reach
        (None, ("0.0.0.0", 8080), f"http://{socket.gethostname()}:8080"),
        (None, ("::", 8080), f"http://{socket.gethostname()}:8080"),
        # no address (a worker of its own): the documented default
        (None, None, DEFAULT_PUBLIC_URL),
        ("", None, DEFAULT_PUBLIC_URL),
    ],
)
def test_resolve_public_url(
    configured: str | None, listen: tuple[str, int] | None, expected: str
) -> None:
    """The base of links is LOADBELL_PUBLIC_URL, else serve's address, else the default."""
    assert resolve_public_url(configured, listen) == expected


def test_unknown_error_is_one_line_unless_debug() -> None:
    """An exception no rule knows is one line that says to run with --debug; with --debug it
    propagates with its traceback."""
    import click

    @click.group(cls=LoadbellGroup)
    @click.option("--debug", is_flag=True)
    def cli(debug: bool) -> None:
        """A group as `loadbell`'s."""

    @cli.command()
    def boom() -> None:
        raise RuntimeError("the flux capacitor is cold")

    result = CliRunner().invoke(cli, ["boom"])
    assert result.exit_code == 1
    assert result.output == (
        "Error: unexpected error: RuntimeError: the flux capacitor is cold; "
        "run again with --debug for details\n"
    )
    debug = CliRunner().invoke(cli, ["--debug", "boom"])
    assert isinstance(debug.exception, RuntimeError)
    assert explain(KeyError("x"), None).startswith("unexpected error: KeyError")
