"""Mutes: the rows, and the one read the fan-out makes for every event.

The fan-out's read (:func:`live_mutes`) is one range of ``ix_mutes_active``: the
organization's mutes whose ``until`` is still ahead, narrowed to the event's project and
load test. It runs for every event, so it goes straight to the driver's connection inside
the caller's transaction, as the run update's other statements do (``sqlite3``:
``store/inline_sql.py``; asyncpg: ``store/postgres_sql.py``); otherwise it is a
statement built once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store import postgres_sql
from loadbell.store.inline_sql import sqlite3_of, timestamp
from loadbell.store.sqlite_driver import as_sqlalchemy_errors
from loadbell.store.tables import mutes, users


@dataclass(frozen=True)
class LiveMute:
    """A mute in force for an event; ``channel_id`` None: it mutes every channel."""

    id: int
    channel_id: int | None


# A mute's project and load test either are unset (it covers them all) or are the event's.
# An event without a project or load test (organization events) compares NULL, which no
# set value equals: only mutes without that scope match it.
_LIVE = (
    sa.select(mutes.c.id, mutes.c.channel_id)
    .where(mutes.c.organization_id == sa.bindparam("b_org"))
    .where(mutes.c.until > sa.bindparam("b_now"))
    .where(sa.or_(mutes.c.project_id.is_(None), mutes.c.project_id == sa.bindparam("b_project")))
    .where(
        sa.or_(mutes.c.load_test_id.is_(None), mutes.c.load_test_id == sa.bindparam("b_load_test"))
    )
    .order_by(mutes.c.id)
)
_LIVE_SQL = (
    "SELECT id, channel_id FROM mutes WHERE organization_id = ? AND until > ? "
    "AND (project_id IS NULL OR project_id = ?) AND (load_test_id IS NULL OR load_test_id = ?) "
    "ORDER BY id"
)
_LIVE_PG = (
    "SELECT id, channel_id FROM mutes WHERE organization_id = $1 AND until > $2 "
    "AND (project_id IS NULL OR project_id = $3) AND (load_test_id IS NULL OR load_test_id = $4) "
    "ORDER BY id"
)


async def live_mutes(
    conn: AsyncConnection,
    organization_id: int,
    project_id: int | None,
    load_test_id: int | None,
    now: datetime,
) -> list[LiveMute]:
    """The mutes in force at ``now`` for an event of this organization, project and load
    test, oldest first; whether one covers a channel is :func:`covering`."""
    raw = sqlite3_of(conn)
    if raw is not None:
        with as_sqlalchemy_errors(_LIVE_SQL):
            rows = raw.execute(
                _LIVE_SQL, (organization_id, timestamp(now), project_id, load_test_id)
            ).fetchall()
        return [LiveMute(r[0], r[1]) for r in rows]
    pg = postgres_sql.asyncpg_of(conn)
    if pg is not None:
        rows = await postgres_sql.fetch(
            pg, _LIVE_PG, organization_id, now, project_id, load_test_id
        )
        return [LiveMute(r[0], r[1]) for r in rows]
    result = await conn.execute(
        _LIVE,
        {
            "b_org": organization_id,
            "b_now": now,
            "b_project": project_id,
            "b_load_test": load_test_id,
        },
    )
    return [LiveMute(r.id, r.channel_id) for r in result]


def covering(live: Sequence[LiveMute], channel_id: int) -> LiveMute | None:
    """The first of the live mutes that covers this channel, or None."""
    for mute in live:
        if mute.channel_id is None or mute.channel_id == channel_id:
            return mute
    return None


_WITH_NAME = sa.select(mutes, users.c.name.label("created_by_name")).join(
    users, users.c.id == mutes.c.created_by
)


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> int:
    return int(
        (await conn.execute(sa.insert(mutes).values(**values).returning(mutes.c.id))).scalar_one()
    )


async def read(conn: AsyncConnection, mute_id: int) -> sa.Row[Any] | None:
    return (await conn.execute(_WITH_NAME.where(mutes.c.id == mute_id))).first()


async def delete(conn: AsyncConnection, mute_id: int) -> None:
    await conn.execute(sa.delete(mutes).where(mutes.c.id == mute_id))


async def page(
    conn: AsyncConnection,
    organization_ids: Sequence[int],
    *,
    now: datetime,
    active: bool,
    project_id: int | None = None,
    load_test_id: int | None = None,
    channel_id: int | None = None,
    limit: int,
    before_id: int | None = None,
) -> list[sa.Row[Any]]:
    """Newest first: the mutes in force at ``now`` (``active``) or those that ended; each
    filter compares the mute's own column."""
    q = (
        _WITH_NAME.where(mutes.c.organization_id.in_(list(organization_ids)))
        .where(mutes.c.until > now if active else mutes.c.until <= now)
        .order_by(mutes.c.id.desc())
        .limit(limit)
    )
    for column, value in (
        (mutes.c.project_id, project_id),
        (mutes.c.load_test_id, load_test_id),
        (mutes.c.channel_id, channel_id),
    ):
        if value is not None:
            q = q.where(column == value)
    if before_id is not None:
        q = q.where(mutes.c.id < before_id)
    return list(await conn.execute(q))


async def in_force_for_load_test(
    conn: AsyncConnection,
    organization_id: int,
    project_id: int,
    load_test_id: int,
    now: datetime,
) -> list[sa.Row[Any]]:
    """The mutes in force that silence some or all of this load test's events (the run
    page shows them): the organization's, the project's and the load test's own."""
    q = (
        _WITH_NAME.where(mutes.c.organization_id == organization_id)
        .where(mutes.c.until > now)
        .where(sa.or_(mutes.c.project_id.is_(None), mutes.c.project_id == project_id))
        .where(sa.or_(mutes.c.load_test_id.is_(None), mutes.c.load_test_id == load_test_id))
        .order_by(mutes.c.id)
    )
    return list(await conn.execute(q))
