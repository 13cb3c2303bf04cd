"""Migration 0010 subscribes the human-readable channels that exist before it to
channel.disabled (they subscribe by default), and leaves the other kinds' lists alone."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from loadbell.settings import Settings
from loadbell.store import accounts, migrate
from loadbell.store.db import create_engine


async def test_existing_chat_channels_subscribe_to_channel_disabled(tmp_path: Path) -> None:
    """A Slack channel made at 0009 gets channel.disabled added; a webhook does not.
    (SQLite only: the migration's statements are plain Core, the same on PostgreSQL.)"""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'old.db'}",
        secret_key="k",
        secret_key_file=tmp_path / "unused.key",
    )
    engine = create_engine(settings)
    try:
        await migrate.upgrade(engine, "0009")
        async with engine.begin() as conn:
            await accounts.bootstrap(conn)
            for kind, events in (("slack", ["test.finished"]), ("webhook", ["test.started"])):
                await conn.execute(
                    sa.text(
                        "INSERT INTO channels (organization_id, kind, name, enabled, config, "
                        "events, filters, retry) VALUES (1, :kind, :kind, 1, '{}', :events, "
                        "'{}', '{}')"
                    ),
                    {"kind": kind, "events": json.dumps(events)},
                )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            rows = {
                kind: json.loads(events)
                for kind, events in await conn.execute(sa.text("SELECT kind, events FROM channels"))
            }
    finally:
        await engine.dispose()
    assert rows == {"slack": ["test.finished", "channel.disabled"], "webhook": ["test.started"]}
