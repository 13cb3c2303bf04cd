"""The secret key at start-up (check value, adoption, key file) and its rotation, on both
databases, called directly (the CLI tests run the same through real processes)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from conftest import PG_ADMIN_URL
from loadbell.security.secretbox import SecretBox, SecretKeyError
from loadbell.services.secret_keys import open_box, rotate
from loadbell.settings import Settings
from loadbell.store import accounts, key_check, migrate
from loadbell.store.db import create_engine
from loadbell.store.tables import channel_overrides, channels

UNUSED = Path("/nonexistent/loadbell.key")  # never read: LOADBELL_SECRET_KEY is given


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """The test's migrated, empty database, seeded with the default organization."""
    eng = create_engine(Settings(database_url=db_url))
    async with eng.begin() as conn:
        await accounts.bootstrap(conn)
    yield eng
    await eng.dispose()


def _channel_row(key: str, secret: str) -> dict[str, object]:
    """A webhook channel whose secrets are sealed with ``key``."""
    return {
        "organization_id": 1,
        "kind": "webhook",
        "name": f"hook {secret}",
        "config": {"format": "loadimpact"},
        "secrets": SecretBox(key).seal({"url": f"http://127.0.0.1:9/{secret}"}),
        "events": [],
        "filters": {},
        "retry": {},
    }


async def _add_channel(engine: AsyncEngine, key: str, secret: str) -> int:
    async with engine.begin() as conn:
        return int(
            (
                await conn.execute(
                    sa.insert(channels).values(**_channel_row(key, secret)).returning(channels.c.id)
                )
            ).scalar_one()
        )


async def _add_override(engine: AsyncEngine, channel_id: int, key: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(channel_overrides).values(
                channel_id=channel_id,
                project_id=1,
                config={},
                secrets=SecretBox(key).seal({"headers": {"X-Token": "project-token"}}),
            )
        )


async def _check_value(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await key_check.read_check(conn)


async def _all_sealed(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        out = [t for (t,) in await conn.execute(sa.select(channels.c.secrets))]
        out += [t for (t,) in await conn.execute(sa.select(channel_overrides.c.secrets))]
    return out


async def test_first_start_stores_the_check_value_and_refuses_another_key(
    engine: AsyncEngine,
) -> None:
    """The first key on a database without secrets is stored as its check value; another
    key is refused with what to do; a list that holds the first key is accepted."""
    assert await _check_value(engine) is None
    await open_box(engine, "first", UNUSED)
    assert await _check_value(engine) is not None
    with pytest.raises(SecretKeyError) as refused:
        await open_box(engine, "second", UNUSED)
    message = str(refused.value)
    assert "\n" not in message and "set LOADBELL_SECRET_KEY" in message
    assert "check value" in message
    await open_box(engine, "second,first", UNUSED)


async def test_a_new_key_file_is_written_only_when_the_database_takes_it(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Without LOADBELL_SECRET_KEY the first folder gets a key file (mode 0600) and the
    check value; a second folder's new key is refused and leaves no file behind."""
    first, second = tmp_path / "a" / "loadbell.key", tmp_path / "b" / "loadbell.key"
    box = await open_box(engine, None, first)
    assert first.read_text().strip() == box.keys[0]
    assert first.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SecretKeyError, match="no key file was written"):
        await open_box(engine, None, second)
    assert not second.exists() and not second.parent.exists()
    assert (await open_box(engine, None, first)).keys == box.keys  # the file, read again


async def test_an_existing_database_adopts_the_key_that_opens_its_secrets(
    engine: AsyncEngine,
) -> None:
    """A database with secrets and no check value (set up before it existed) refuses a key
    that opens none of them, storing nothing, and adopts the key that opens all of them."""
    cid = await _add_channel(engine, "k1", "T0KEN")
    await _add_override(engine, cid, "k1")
    with pytest.raises(SecretKeyError, match="stored secrets do not open"):
        await open_box(engine, "other", UNUSED)
    assert await _check_value(engine) is None
    await open_box(engine, "k1", UNUSED)
    sealed = await _check_value(engine)
    assert sealed is not None and key_check.opens_check(SecretBox("k1"), sealed)
    with pytest.raises(SecretKeyError):
        await open_box(engine, "other", UNUSED)


async def test_secrets_under_two_keys_are_refused_until_rotated(engine: AsyncEngine) -> None:
    """Secrets written with two keys (two folders, each with its own key file, before the
    check existed) refuse either key alone, saying to list both and rotate; rotating with
    both moves everything to the first, which then starts."""
    await _add_channel(engine, "k1", "one")
    await _add_channel(engine, "k2", "two")
    with pytest.raises(SecretKeyError) as refused:
        await open_box(engine, "k1", UNUSED)
    assert "1 of 2 stored secrets" in str(refused.value)
    assert "loadbell keys rotate" in str(refused.value)
    done = await rotate(engine, SecretBox("k1,k2"), lambda line: None)
    assert (done.total, done.current, done.unopened, done.check_value) == (1, 1, [], True)
    await open_box(engine, "k1", UNUSED)
    assert all(SecretBox("k1").opens(t) for t in await _all_sealed(engine))


async def test_rotate_reseals_everything_in_batches_and_again_changes_nothing(
    engine: AsyncEngine,
) -> None:
    """keys rotate seals every channel, override and the check value with the newest key,
    a batch per transaction with a progress line each; the old key can then go, and a
    second run finds nothing to do."""
    await open_box(engine, "old", UNUSED)
    ids = [await _add_channel(engine, "old", f"t{i}") for i in range(5)]
    for cid in ids[:2]:
        await _add_override(engine, cid, "old")
    lines: list[str] = []
    done = await rotate(engine, SecretBox("new,old"), lines.append, batch=2)
    assert done.resealed == {"channels": 5, "channel overrides": 2}
    assert done.check_value and done.unopened == [] and done.current == 0
    assert sum(1 for line in lines if line.startswith("channels:")) == 3  # 2 + 2 + 1
    assert "re-encrypted 7 secrets" in done.summary()
    assert all(SecretBox("new").opens(t) for t in await _all_sealed(engine))
    await open_box(engine, "new", UNUSED)
    with pytest.raises(SecretKeyError):
        await open_box(engine, "old", UNUSED)

    again = await rotate(engine, SecretBox("new,old"), lines.append, batch=2)
    assert (again.total, again.current, again.check_value) == (0, 7, False)


async def test_rotate_ends_while_channels_keep_being_created(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Channels created while keys rotate (by processes that seal with the newest key
    already) do not keep the walk going: it stops at the last id of its start. Here a
    channel is created with each batch the walk reads."""
    await open_box(engine, "old", UNUSED)
    ids = [await _add_channel(engine, "old", f"t{i}") for i in range(3)]
    read = key_check.sealed_batch
    batches = 0

    async def and_one_more(conn: sa.ext.asyncio.AsyncConnection, *args: object) -> object:
        nonlocal batches
        batches += 1
        assert batches < 50, "the walk follows the channels created after it began"
        rows = await read(conn, *args)  # type: ignore[arg-type]
        await conn.execute(
            sa.insert(channels).values(**_channel_row("new", f"meanwhile {batches}"))
        )
        return rows

    monkeypatch.setattr(key_check, "sealed_batch", and_one_more)
    done = await rotate(engine, SecretBox("new,old"), lambda line: None, batch=1)
    assert done.resealed["channels"] == len(ids)
    assert done.check_value and done.unopened == []
    assert all(SecretBox("new").opens(t) for t in await _all_sealed(engine))


async def test_rotate_reports_what_no_key_opens_and_keeps_the_check_value(
    engine: AsyncEngine,
) -> None:
    """A secret no listed key opens is named in the report and left alone, and the check
    value stays under its old key (the rotation is not complete); a check value no key
    opens stops the rotation before it changes anything."""
    await open_box(engine, "old", UNUSED)
    await _add_channel(engine, "old", "fine")
    stray = await _add_channel(engine, "stranger", "stray")
    before = await _check_value(engine)
    done = await rotate(engine, SecretBox("new,old"), lambda line: None)
    assert done.unopened == [f"channels {stray}"] and done.total == 1
    assert not done.check_value and await _check_value(engine) == before
    assert f"channels {stray}" in done.unopened_message()
    sealed = await _all_sealed(engine)
    with pytest.raises(SecretKeyError, match="check value opens with none"):
        await rotate(engine, SecretBox("unrelated"), lambda line: None)
    assert await _all_sealed(engine) == sealed


@pytest.fixture(params=["sqlite", "postgresql"])
async def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database with no schema at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    request.getfixturevalue("pg_database")  # skips (or fails under CI) without PostgreSQL
    name = f"loadbell_keys_{uuid.uuid4().hex[:8]}"
    admin = PG_ADMIN_URL.replace("+asyncpg", "")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        yield f"{admin.rsplit('/', 1)[0]}/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def test_upgrade_from_0004_then_adopt(unmigrated_url: str) -> None:
    """A database with channels made at revision 0004 upgrades to the check table, which
    starts empty, and adopts the key its secrets were sealed with at the first start."""
    eng = create_engine(Settings(database_url=unmigrated_url))
    try:
        await migrate.upgrade(eng, "0004")
        async with eng.begin() as conn:
            await accounts.bootstrap(conn)
        await _add_channel(eng, "k1", "T0KEN")
        await migrate.upgrade(eng)
        assert await _check_value(eng) is None
        with pytest.raises(SecretKeyError):
            await open_box(eng, "k2", UNUSED)
        await open_box(eng, "k1", UNUSED)
        assert await _check_value(eng) is not None
    finally:
        await eng.dispose()


async def test_two_first_starts_from_one_folder_share_the_new_key_file(
    db_url: str, tmp_path: Path
) -> None:
    """Two processes of the same folder starting at once on an empty database, with no key
    file yet, end up with one key file and the same key (the loser reads the winner's)."""
    path = tmp_path / "shared" / "loadbell.key"
    engines = [create_engine(Settings(database_url=db_url)) for _ in range(2)]
    try:
        boxes = await asyncio.gather(*(open_box(e, None, path) for e in engines))
    finally:
        for e in engines:
            await e.dispose()
    assert boxes[0].keys == boxes[1].keys == [path.read_text().strip()]
