"""The run update's simplest statements, straight on SQLite's own connection.

``PATCH /runs/{id}`` is what a load test's client calls at a high rate, and on SQLite most
of its CPU went to SQLAlchemy rather than to SQLite: about 100 µs per statement of
compiling-cache lookups, parameter processing, result set-up and greenlet switches, for
statements SQLite runs in 5 to 20 µs (docs/benchmarks.md, "The API path"). The statements
here convert their values as SQLAlchemy's column types do on SQLite (timestamps as naive
UTC text with microseconds, ``store/queue/sqlite.py: timestamp``; JSON as ``json_dumps``
text), and on SQLite they run on the ``sqlite3`` connection under the caller's transaction
(``store/sqlite_driver.py``'s ``InlineConnection``, reached through SQLAlchemy's public
``Connection.connection.driver_connection``), inside the same ``BEGIN IMMEDIATE``. On
PostgreSQL they run on asyncpg's connection once the transaction has begun
(``store/postgres_sql.py``); before that, and on any other driver, through SQLAlchemy.

Each function has the same effect on every database; ``tests/store/test_inline_sql.py``
holds the two ways to one answer.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store import postgres_sql
from loadbell.store.db import json_dumps
from loadbell.store.postgres_sql import asyncpg_of
from loadbell.store.queue.sqlite import read_timestamp
from loadbell.store.sqlite_driver import InlineConnection, as_sqlalchemy_errors
from loadbell.store.tables import (
    DELIVERY_PENDING,
    UTCDateTime,
    deliveries,
    events,
    is_pending,
    run_status_changes,
    runs,
)


def timestamp(value: datetime) -> str:
    """A ``UTCDateTime`` value as SQLAlchemy stores it on SQLite: an aware one in UTC
    without its zone (a naive one as it is), always with microseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


def sqlite3_of(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn`` when it is loadbell's inline SQLite driver
    (statements on it join ``conn``'s transaction); None otherwise."""
    if conn.dialect.name != "sqlite" or conn.sync_connection is None:
        return None
    driver = conn.sync_connection.connection.driver_connection
    if not isinstance(driver, InlineConnection) or driver.raw is None:
        return None
    return driver.for_statement()


_ADD_STATUS_CHANGE = sa.insert(run_status_changes)
_ADD_STATUS_CHANGE_SQL = "INSERT INTO run_status_changes (run_id, status) VALUES (?, ?)"


async def add_status_change(conn: AsyncConnection, run_id: int, status: int) -> None:
    """A row of the run's status history (``at`` is the database's current time)."""
    raw = sqlite3_of(conn)
    if raw is not None:
        with as_sqlalchemy_errors(_ADD_STATUS_CHANGE_SQL):
            raw.execute(_ADD_STATUS_CHANGE_SQL, (run_id, status))
        return
    pg = asyncpg_of(conn)
    if pg is not None:
        await postgres_sql.add_status_change(pg, run_id, status)
        return
    await conn.execute(_ADD_STATUS_CHANGE, {"run_id": run_id, "status": status})


_PENDING_KEYS = (
    sa.select(deliveries.c.order_key)
    .where(deliveries.c.order_key.in_(sa.bindparam("b_keys", expanding=True)))
    .where(is_pending(deliveries))
)
# The pending value as a literal, as is_pending writes it: the partial index needs it.
_PENDING_KEYS_SQL = (
    "SELECT order_key FROM deliveries WHERE order_key IN (SELECT value FROM json_each(?)) "
    f"AND status = '{DELIVERY_PENDING}'"
)


async def pending_order_keys(conn: AsyncConnection, keys: Sequence[str]) -> set[str]:
    """Which of these order keys still have a pending delivery."""
    raw = sqlite3_of(conn)
    if raw is not None:
        # One statement text for any number of keys (json_each), so SQLite's statement
        # cache keeps it prepared.
        listed = "[" + ",".join(_json_string(k) for k in keys) + "]"
        with as_sqlalchemy_errors(_PENDING_KEYS_SQL):
            return {r[0] for r in raw.execute(_PENDING_KEYS_SQL, (listed,))}
    pg = asyncpg_of(conn)
    if pg is not None:
        return await postgres_sql.pending_order_keys(pg, keys)
    return {r[0] for r in await conn.execute(_PENDING_KEYS, {"b_keys": list(keys)})}


def _json_string(text: str) -> str:
    # Order keys are "<channel id>:<run id>:<target>"; a target may hold any character.
    return orjson.dumps(text).decode()


DELIVERY_COLUMNS = (
    "uuid",
    "event_id",
    "channel_id",
    "target",
    "order_key",
    "status",
    "reason",  # why a delivery is recorded skipped (None: pending)
    "series",
    "attempts",
    "next_attempt_at",
    "lease_until",
    "lease_owner",
    # Copied from the event, for the delivery log's indexes (migration 0007).
    "organization_id",
    "event_type",
    "run_id",
)
_INSERT_DELIVERIES = sa.insert(deliveries).returning(deliveries.c.id, sort_by_parameter_order=True)
_NOTIFY = sa.text(postgres_sql.NOTIFY)
_INSERT_DELIVERY_SQL = (
    f"INSERT INTO deliveries ({', '.join(DELIVERY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in DELIVERY_COLUMNS)}) RETURNING id"
)


async def insert_deliveries(
    conn: AsyncConnection, rows: Sequence[dict[str, Any]], *, notify: bool = False
) -> list[int]:
    """Insert delivery rows (each with exactly :data:`DELIVERY_COLUMNS`); their ids, in
    order. ``notify``: tell PostgreSQL's listening workers at commit (``NOTIFY``, in the
    same statement when it can be; SQLite's workers poll)."""
    raw = sqlite3_of(conn)
    if raw is not None:
        ids = []
        with as_sqlalchemy_errors(_INSERT_DELIVERY_SQL):
            for row in rows:
                values = tuple(row[c] for c in DELIVERY_COLUMNS)
                cur = raw.execute(_INSERT_DELIVERY_SQL, values)
                ids.append(int(cur.fetchall()[0][0]))  # all: the statement runs to its end
        return ids
    pg = asyncpg_of(conn)
    if pg is not None:
        return await postgres_sql.insert_deliveries(pg, DELIVERY_COLUMNS, rows, notify=notify)
    # One row (the usual case: one webhook) as a single execute: SQLAlchemy's executemany
    # with ordered RETURNING costs about twice as much for it.
    result = await conn.execute(_INSERT_DELIVERIES, rows[0] if len(rows) == 1 else list(rows))
    ids = [r[0] for r in result]
    if notify and conn.dialect.name == "postgresql":
        await conn.execute(_NOTIFY)
    return ids


# Runs


@functools.cache
def _update_run(columns: frozenset[str]) -> sa.Update:
    """``UPDATE runs SET <columns> WHERE id = :b_run_id``, built once per set of columns
    (a run update sets one of a handful of combinations)."""
    return (
        sa.update(runs)
        .where(runs.c.id == sa.bindparam("b_run_id"))
        .values({c: sa.bindparam(f"v_{c}", type_=runs.c[c].type) for c in columns})
    )


@functools.cache
def _update_run_sql(columns: tuple[str, ...]) -> str:
    sets = ", ".join(f"{c} = ?" for c in columns)
    return f"UPDATE runs SET {sets} WHERE id = ?"


def _stored(value: Any) -> Any:
    """A run column's value as SQLAlchemy's types store it on SQLite."""
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, dict):  # a JSON column of runs (metrics, comparison)
        return json_dumps(value)
    return value


async def update_run(
    conn: AsyncConnection, run_id: int, values: Mapping[str, Any], *, status_change: bool = False
) -> None:
    """Set these columns of the run; with ``status_change``, also add the row of its status
    history for ``values["status"]`` (as :func:`add_status_change`; on PostgreSQL in the
    same statement)."""
    raw = sqlite3_of(conn)
    if raw is not None:
        columns = tuple(sorted(values))
        sql = _update_run_sql(columns)
        with as_sqlalchemy_errors(sql):
            raw.execute(sql, [*(_stored(values[c]) for c in columns), run_id])
    elif (pg := asyncpg_of(conn)) is not None:
        await postgres_sql.update_run(pg, run_id, values, status_change)
        return
    else:
        await conn.execute(
            _update_run(frozenset(values)),
            {"b_run_id": run_id, **{f"v_{c}": v for c, v in values.items()}},
        )
    if status_change:
        await add_status_change(conn, run_id, values["status"])


_RUN_TIMESTAMPS = frozenset(c.name for c in runs.c if isinstance(c.type, UTCDateTime))
_RUN_JSON = frozenset(c.name for c in runs.c if isinstance(c.type, sa.JSON))
_RUN_NAMES = ("user_name", "load_test_name", "project_name", "organization_name")
RUN_WITH_NAMES_SQL = (
    f"SELECT {', '.join(f'r.{c.name}' for c in runs.c)}, u.name, lt.name, p.name, o.name "
    "FROM runs r LEFT OUTER JOIN users u ON u.id = r.user_id "
    "JOIN load_tests lt ON lt.id = r.load_test_id "
    "JOIN projects p ON p.id = lt.project_id "
    "JOIN organizations o ON o.id = p.organization_id "
    "WHERE r.id = ?"
)
_RUN_WITH_NAMES_KEYS = (*(c.name for c in runs.c), *_RUN_NAMES)


def read_run_with_names(raw: sqlite3.Connection, run_id: int) -> dict[str, Any] | None:
    """``store/context.py: run_with_names`` on the sqlite3 connection: the same dict."""
    with as_sqlalchemy_errors(RUN_WITH_NAMES_SQL):
        row = raw.execute(RUN_WITH_NAMES_SQL, (run_id,)).fetchall()
    if not row:
        return None
    out = dict(zip(_RUN_WITH_NAMES_KEYS, row[0], strict=True))
    for key in _RUN_TIMESTAMPS:
        if out[key] is not None:
            out[key] = read_timestamp(out[key])
    for column in _RUN_JSON:
        if out[column] is not None:
            out[column] = orjson.loads(out[column])
    return out


# Events

_INSERT_EVENT = sa.insert(events).returning(events.c.id)
EVENT_COLUMNS = (
    "type",
    "occurred_at",
    "organization_id",
    "project_id",
    "load_test_id",
    "run_id",
    "context",
)
_INSERT_EVENT_SQL = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)}) RETURNING id"
)
_INSERT_EVENT_PG = postgres_sql.insert_event_sql(EVENT_COLUMNS)


def _event_row_pg(values: Mapping[str, Any]) -> list[Any]:
    row = [values[c] for c in EVENT_COLUMNS]
    row[1], row[6] = row[1].astimezone(UTC), json_dumps(row[6])
    return row


async def insert_event(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    """Insert an event row (exactly :data:`EVENT_COLUMNS`); its id."""
    raw = sqlite3_of(conn)
    if raw is not None:
        row = [values[c] for c in EVENT_COLUMNS]
        row[1], row[6] = timestamp(row[1]), json_dumps(row[6])
        with as_sqlalchemy_errors(_INSERT_EVENT_SQL):
            return int(raw.execute(_INSERT_EVENT_SQL, row).fetchall()[0][0])
    pg = asyncpg_of(conn)
    if pg is not None:
        return await postgres_sql.insert_event(pg, _INSERT_EVENT_PG, _event_row_pg(values))
    return int((await conn.execute(_INSERT_EVENT, dict(values))).scalar_one())


_STAGE_PG = {
    many: postgres_sql.stage_sql(EVENT_COLUMNS, DELIVERY_COLUMNS, many) for many in (False, True)
}


async def insert_event_with_deliveries(
    conn: AsyncConnection, event: Mapping[str, Any], rows: Sequence[dict[str, Any]]
) -> tuple[int, list[int]]:
    """Insert an event (exactly :data:`EVENT_COLUMNS`) and its delivery rows (exactly
    :data:`DELIVERY_COLUMNS`; ``event_id`` is set to the new event's). A row may come with
    a lease (``lease_owner`` and ``lease_until``, offered to a worker of this process): it
    keeps it only when no earlier delivery of its order key is still pending, otherwise
    both are set to None. When a pending row is left without a lease, PostgreSQL's workers
    are told at commit (``NOTIFY``). Returns the event id and the deliveries' ids, in
    order. On PostgreSQL all of it is one statement."""
    pg = asyncpg_of(conn)
    if pg is not None:
        given = [c for c in DELIVERY_COLUMNS if c != "event_id"]
        event_id, ids, kept = await postgres_sql.stage(
            pg,
            _STAGE_PG[len(rows) > 1],
            _event_row_pg(event),
            [[row[c] for c in given] for row in rows],
        )
        for row, keeps in zip(rows, kept, strict=True):
            row["event_id"] = event_id
            if not keeps:
                row["lease_owner"] = row["lease_until"] = None
        return event_id, ids
    event_id = await insert_event(conn, event)
    keys = sorted({r["order_key"] for r in rows if r["lease_owner"] and r["order_key"]})
    waiting = await pending_order_keys(conn, keys) if keys else set()
    for row in rows:
        row["event_id"] = event_id
        if row["order_key"] in waiting:
            row["lease_owner"] = row["lease_until"] = None
    notify = any(r["status"] == DELIVERY_PENDING and r["lease_owner"] is None for r in rows)
    return event_id, await insert_deliveries(conn, rows, notify=notify)


# Channels

CHANNEL_FIELDS = (
    "id",
    "organization_id",
    "project_id",
    "kind",
    "name",
    "enabled",
    "config",
    "secrets",
    "events",
    "filters",
    "retry",
    "disabled_reason",  # a channel disabled for failing still records skipped deliveries
)
_LIVE_CHANNELS = (
    f"SELECT {', '.join(f'c.{f}' for f in CHANNEL_FIELDS)}, ov.id, ov.enabled, ov.config, "
    "ov.secrets FROM channels c "
    "LEFT OUTER JOIN channel_overrides ov ON ov.channel_id = c.id AND ov.project_id = ? "
    "AND c.project_id IS NULL "
    "WHERE c.organization_id = ? AND c.deleted_at IS NULL "
    "AND (c.project_id IS NULL OR c.project_id = ?) ORDER BY c.id"
)


_LIVE_CHANNELS_PG = postgres_sql.live_channels_sql(CHANNEL_FIELDS)


async def fetch_live_channels(
    pg: asyncpg.Connection, organization_id: int, project_id: int | None
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """:func:`read_live_channels` on asyncpg (JSON comes decoded): the same list."""
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for r in await postgres_sql.fetch(pg, _LIVE_CHANNELS_PG, project_id, organization_id):
        override = None
        if r[-4] is not None:
            override = {"enabled": r[-3], "config": r[-2] or {}, "secrets": r[-1]}
        out.append((dict(zip(CHANNEL_FIELDS, r, strict=False)), override))
    return out


def read_live_channels(
    raw: sqlite3.Connection, organization_id: int, project_id: int | None
) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Live channels an event of the project may reach, each with the project's override
    of it (``store/channels.py: channels_with_overrides``, whose statement this is), as
    mappings with JSON decoded and secrets still sealed."""
    loads = orjson.loads
    out: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    # project_id None: no project channel matches "c.project_id = NULL", no override joins.
    with as_sqlalchemy_errors(_LIVE_CHANNELS):
        rows = raw.execute(_LIVE_CHANNELS, (project_id, organization_id, project_id)).fetchall()
    for r in rows:
        channel = dict(zip(CHANNEL_FIELDS, r, strict=False))
        channel["enabled"] = bool(channel["enabled"])
        for key in ("config", "events", "filters", "retry"):
            channel[key] = loads(channel[key])
        override = None
        if r[-4] is not None:
            override = {
                "enabled": None if r[-3] is None else bool(r[-3]),
                "config": loads(r[-2]) if r[-2] is not None else {},
                "secrets": r[-1],
            }
        out.append((channel, override))
    return out
