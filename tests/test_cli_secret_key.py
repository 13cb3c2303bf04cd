"""The secret key through real `loadbell serve`, `worker` and `keys rotate` processes, on
SQLite and PostgreSQL: a key that does not fit refuses in one line and writes no key file,
two first starts from different folders cannot both win, and rotation while serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import sqlalchemy as sa
from click.testing import CliRunner

from conftest import (
    LoadbellProcess,
    SpawnLoadbell,
    free_port,
    seed,
    start_server,
    webhook_channel,
    worker_env,
)
from loadbell.cli import main
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store import key_check
from loadbell.store.db import create_engine
from loadbell.store.tables import channels
from loadbell.testing import RecordingReceiver


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    """The database of ``settings`` and no LOADBELL_SECRET_KEY (key file mode)."""
    env = worker_env(settings, **extra)
    if "LOADBELL_SECRET_KEY" not in extra:
        del env["LOADBELL_SECRET_KEY"]
    return env


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    return a, b


async def _refused(proc: LoadbellProcess) -> str:
    """The one stderr line of a process that refused to start (non-zero, no traceback)."""
    assert await proc.finish(60) != 0, proc.output()
    lines = [line for line in proc.stderr if line.strip()]
    assert len(lines) == 1, proc.output()
    assert "Traceback" not in proc.output()
    return lines[0]


async def test_another_folder_refuses_in_one_line_and_writes_no_key_file(
    spawn_loadbell: SpawnLoadbell, settings: Settings, tmp_path: Path
) -> None:
    """After a worker started from folder a made the key file and the check value, a worker
    and a serve from folder b (no key file) each exit with one line saying what to do and
    leave no key file in b; from a, or with the key in LOADBELL_SECRET_KEY, they start."""
    a, b = _folders(tmp_path)
    first = await spawn_loadbell("worker", env=_env(settings), cwd=a)
    await first.wait_for_line("started", timeout=60)
    await first.stop()
    key = (a / "loadbell.key").read_text().strip()

    for args in (("worker",), ("serve", "--port", str(free_port()))):
        line = await _refused(await spawn_loadbell(*args, env=_env(settings), cwd=b))
        assert "LOADBELL_SECRET_KEY" in line and "no key file was written" in line, line
        assert not (b / "loadbell.key").exists()

    wrong = await spawn_loadbell("worker", env=_env(settings, LOADBELL_SECRET_KEY="nope"), cwd=b)
    assert "LOADBELL_SECRET_KEY" in await _refused(wrong)
    right = await spawn_loadbell("worker", env=_env(settings, LOADBELL_SECRET_KEY=key), cwd=b)
    await right.wait_for_line("started", timeout=60)
    await right.stop()
    assert not (b / "loadbell.key").exists()


async def test_two_first_starts_from_different_folders_cannot_both_win(
    spawn_loadbell: SpawnLoadbell, settings: Settings, tmp_path: Path
) -> None:
    """Two workers started at once from different folders on an empty database: one
    stores its key and runs, the other refuses in one line and leaves no key file."""
    a, b = _folders(tmp_path)
    procs = {
        folder: await spawn_loadbell("worker", env=_env(settings), cwd=folder) for folder in (a, b)
    }
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while not any(p.proc.returncode is not None for p in procs.values()):
        assert loop.time() < deadline, [p.output() for p in procs.values()]
        await asyncio.sleep(0.05)
    [loser] = [f for f, p in procs.items() if p.proc.returncode is not None]
    [winner] = [f for f in procs if f != loser]
    await procs[winner].wait_for_line("started", timeout=60)
    assert "set LOADBELL_SECRET_KEY" in await _refused(procs[loser])
    assert (winner / "loadbell.key").is_file() and not (loser / "loadbell.key").exists()
    await procs[winner].stop()


async def test_keys_rotate_while_serving_then_drop_the_old_key(
    spawn_loadbell: SpawnLoadbell, settings: Settings, receiver: RecordingReceiver
) -> None:
    """`keys rotate` run while a server with "new,old" keeps adding channels re-encrypts
    everything with progress and a count; a server with the new key alone then delivers
    to every channel with its secret header, the old key alone is refused, and a second
    rotation changes nothing."""
    old = settings.secret_key or ""
    both = settings.model_copy(update={"secret_key": f"new-key,{old}"})
    new = settings.model_copy(update={"secret_key": "new-key"})
    token = await seed(settings)

    async def serving(s: Settings) -> tuple[object, asyncio.Task[None], httpx.AsyncClient]:
        server, task, url = await start_server(s)
        client = httpx.AsyncClient(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        return server, task, client

    async def add(api: httpx.AsyncClient, i: int) -> int:
        body = webhook_channel(f"{receiver.url}/hook/{i}")
        body["config"] = {**body["config"], "headers": {"X-Token": f"token-{i}"}}  # type: ignore[dict-item]
        r = await api.post("/channels", json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    server, task, api = await serving(settings)
    ids = [await add(api, i) for i in range(6)]
    server.should_exit = True  # type: ignore[attr-defined]
    await task
    await api.aclose()

    server, task, api = await serving(both)
    rotating = await spawn_loadbell("keys", "rotate", "--batch-size", "1", env=worker_env(both))
    before = len(ids)
    while rotating.proc.returncode is None or len(ids) < before + 2:
        assert len(ids) < before + 500, rotating.output()
        ids.append(await add(api, len(ids)))  # sealed with the newest key meanwhile
    assert await rotating.finish(60) == 0, rotating.output()
    server.should_exit = True  # type: ignore[attr-defined]
    await task
    await api.aclose()
    stderr = "".join(rotating.stderr)
    assert "channels: " in stderr and "re-encrypted" in stderr, rotating.output()
    assert "the check value too" in stderr, rotating.output()

    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            sealed = [t for (t,) in await conn.execute(sa.select(channels.c.secrets))]
            check = await key_check.read_check(conn)
    finally:
        await engine.dispose()
    assert len(sealed) == len(ids) and all(SecretBox("new-key").opens(t) for t in sealed)
    assert check is not None and key_check.opens_check(SecretBox("new-key"), check)

    server, task, api = await serving(new)
    try:
        for cid in ids:
            sent = (await api.post(f"/channels/{cid}/test")).json()
            assert sent["ok"] is True, sent
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        await task
        await api.aclose()
    tokens = {r.header("X-Token") for r in receiver.requests}
    assert tokens == {f"token-{i}" for i in range(len(ids))}

    refused = await spawn_loadbell("worker", env=worker_env(settings))
    assert "LOADBELL_SECRET_KEY" in await _refused(refused)
    again = await spawn_loadbell("keys", "rotate", env=worker_env(new))
    assert await again.finish(60) == 0, again.output()
    assert "re-encrypted 0 secrets" in "".join(again.stderr), again.output()


def test_keys_rotate_help_gives_the_steps() -> None:
    """`loadbell keys rotate --help` says how keys are listed and the three steps."""
    result = CliRunner().invoke(main, ["keys", "rotate", "--help"])
    assert result.exit_code == 0, result.output
    for needle in ("newest first", 'LOADBELL_SECRET_KEY="NEW,OLD"', "LOADBELL_DATABASE_URL"):
        assert needle in result.output, needle
