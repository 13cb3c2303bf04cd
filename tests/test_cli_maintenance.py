"""`loadbell prune` and `loadbell backup`, run as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from aged_rows import add_delivery, add_event, add_report, ago, count, make_channel, make_run
from conftest import LoadbellProcess, SpawnLoadbell, free_port, seed, worker_env
from loadbell.cli import main
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.db import create_engine
from loadbell.store.tables import channels, deliveries, delivery_attempts, events, run_reports

TABLES = (deliveries, delivery_attempts, events, run_reports)


async def test_prune_dry_run_prints_counts_then_prune_removes_them(
    settings: Settings, spawn_loadbell: SpawnLoadbell
) -> None:
    """`prune --dry-run` prints per table what would go and changes nothing; `prune` then
    removes exactly that and prints the same counts."""
    await seed(settings)
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            run_id = await make_run(conn)
            channel = await make_channel(conn)
            for days in (40, 40, 3):  # two rounds older than a week, one newer
                event = await add_event(conn, run_id, ago(days))
                await add_delivery(conn, event, channel, status="succeeded", at=ago(days))
                await add_report(conn, run_id, ago(days))
        before = [await count(engine, t) for t in TABLES]

        dry = await spawn_loadbell(
            "prune", "--older-than", "7d", "--dry-run", env=worker_env(settings)
        )
        assert await dry.finish() == 0, dry.output()
        assert [await count(engine, t) for t in TABLES] == before
        out = "".join(dry.stdout)
        assert "would remove:" in out
        for table in ("deliveries", "delivery_attempts", "events", "run_reports"):
            assert f"  {table:<18} 2\n" in out, out

        real = await spawn_loadbell("prune", "--older-than", "7d", env=worker_env(settings))
        assert await real.finish() == 0, real.output()
        assert real.stdout[0].endswith(", removed:\n")
        assert real.stdout[1:] == dry.stdout[1:]
        assert [await count(engine, t) for t in TABLES] == [1, 1, 1, 1]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("value", ["7", "1.5h", "a week"])
def test_prune_refuses_a_malformed_duration_naming_the_option(value: str) -> None:
    """A duration that is not a number and a unit is a usage error that shows the forms."""
    result = CliRunner().invoke(main, ["prune", "--older-than", value, "--dry-run"])
    assert result.exit_code == 2
    assert "--older-than: write a number and a unit: 45s, 90m, 12h or 30d" in result.output
    assert "Traceback" not in result.output


def test_backup_of_postgres_points_to_pg_dump() -> None:
    """`backup` on a PostgreSQL URL says to use pg_dump, in one line, and exits non-zero."""
    result = CliRunner().invoke(
        main,
        ["backup", "copy.db", "--database-url", "postgresql://127.0.0.1:5432/nothing"],
    )
    assert result.exit_code == 1
    assert "pg_dump" in result.output and len(result.output.strip().splitlines()) == 1


def test_backup_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    """An existing FILE is left alone without --force and replaced with it."""
    db = tmp_path / "loadbell.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
    target = tmp_path / "copy.db"
    target.write_text("precious")
    args = ["backup", str(target), "--database-url", f"sqlite:///{db}"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "--force" in refused.output
    assert target.read_text() == "precious"
    forced = CliRunner().invoke(main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    with contextlib.closing(sqlite3.connect(target)) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]


async def _serve(spawn: SpawnLoadbell, cwd: Path) -> tuple[LoadbellProcess, str]:
    """``loadbell serve`` in ``cwd`` (its database and key file), once /healthz answers."""
    port = free_port()
    proc = await spawn("serve", "--port", str(port), "--allow-private-targets", cwd=cwd)
    await proc.wait_for_line(f"on http://127.0.0.1:{port}", stream="stdout")
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(400):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return proc, url
            assert proc.proc.returncode is None, proc.output()
            await asyncio.sleep(0.05)
    raise AssertionError(f"loadbell serve never became healthy\n{proc.output()}")


@pytest.mark.slow
async def test_backup_while_serve_writes_then_restore(
    spawn_loadbell: SpawnLoadbell, tmp_path: Path
) -> None:
    """A backup taken while `serve` commits runs is a sound copy holding every run committed
    before it began; restored beside the same key file, `serve` starts on it, shows the
    data, and the channel's secret opens."""
    live, restored = tmp_path / "live", tmp_path / "restored"
    live.mkdir()
    restored.mkdir()
    proc, url = await _serve(spawn_loadbell, live)
    token = next(line.strip() for line in proc.stdout if line.strip().startswith("lb_"))
    api = httpx.AsyncClient(
        base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    secret = {"Authorization": "Bearer kept-with-the-key"}
    config = {"url": "http://127.0.0.1:9/hook", "format": "loadimpact", "headers": secret}
    r = await api.post(
        "/channels",
        json={
            "organization_id": 1,
            "project_id": None,
            "kind": "webhook",
            "name": "hook",
            "config": config,
        },
    )
    assert r.status_code == 201, r.text
    channel_id = r.json()["id"]

    committed = 0
    writing = True

    async def write() -> None:
        nonlocal committed
        while writing:
            r = await api.post("/runs", json={"project_id": 1, "load_test_name": "backed up"})
            assert r.status_code == 201, r.text
            committed += 1

    writer = asyncio.create_task(write())
    try:
        while committed < 20:  # the copy is taken mid-traffic
            assert not writer.done()
            await asyncio.sleep(0.02)
        before = committed
        backup = await spawn_loadbell("backup", str(tmp_path / "copy.db"), cwd=live)
        assert await backup.finish() == 0, backup.output()
        while committed < before + 20:  # and traffic went on during and after it
            assert not writer.done()
            await asyncio.sleep(0.02)
    finally:
        writing = False
        await writer
        await api.aclose()
    await proc.stop()

    out = "".join(backup.stdout)
    assert f"written to {tmp_path / 'copy.db'}" in out
    assert f"the key file {live / 'loadbell.key'}" in out

    with contextlib.closing(sqlite3.connect(tmp_path / "copy.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        runs_in_copy = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert before <= runs_in_copy < committed

    shutil.copy(tmp_path / "copy.db", restored / "loadbell.db")
    shutil.copy(live / "loadbell.key", restored / "loadbell.key")
    again, url = await _serve(spawn_loadbell, restored)
    assert not any("lb_" in line for line in again.stdout)  # not a new database
    async with httpx.AsyncClient(
        base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as api:
        listed = (await api.get("/runs", params={"limit": 1})).json()
        assert listed["items"], listed
        assert (await api.get(f"/channels/{channel_id}")).status_code == 200
    await again.stop()

    settings = Settings(
        database_url=f"sqlite:///{restored / 'loadbell.db'}",
        secret_key_file=restored / "loadbell.key",
    )
    box = SecretBox.from_settings(None, settings.secret_key_file)
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            sealed = (
                await conn.execute(sa.select(channels.c.secrets).where(channels.c.id == channel_id))
            ).scalar_one()
    finally:
        await engine.dispose()
    assert box.open(sealed)["headers"] == secret


def test_prune_without_an_age_refuses_when_retention_keeps_everything() -> None:
    """With LOADBELL_RETENTION_DAYS=0 and no --older-than, prune removes nothing and says
    how to prune anyway."""
    result = CliRunner().invoke(main, ["prune"], env={"LOADBELL_RETENTION_DAYS": "0"})
    assert result.exit_code == 2
    assert "pass --older-than to prune anyway" in result.output


def test_backup_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    """A database URL naming no file is an error naming the path; neither the database nor
    the backup file is created."""
    db, target = tmp_path / "missing.db", tmp_path / "copy.db"
    result = CliRunner().invoke(main, ["backup", str(target), "--database-url", f"sqlite:///{db}"])
    assert result.exit_code == 1
    assert f"there is no database at {db}" in result.output
    assert not db.exists() and list(tmp_path.iterdir()) == []
