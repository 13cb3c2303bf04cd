"""The run update's simplest statements, straight on SQLite's own connection.

``PATCH /runs/{id}`` is what a load test's client calls at a high rate, and on SQLite most
of its CPU went to SQLAlchemy rather than to SQLite: about 100 µs per statement of
compiling-cache lookups, parameter processing, result set-up and greenlet switches, for
statements SQLite runs in 5 to 20 µs (docs/benchmarks.md, "The API path"). The statements
here have plain values only (integers, floats, strings: no type that SQLAlchemy converts),
so on SQLite they run on the ``sqlite3`` connection under the caller's transaction
(``store/sqlite_driver.py``'s ``InlineConnection``, reached through SQLAlchemy's public
``Connection.connection.driver_connection``), inside the same ``BEGIN IMMEDIATE``. On
PostgreSQL, or any other driver, they go through SQLAlchemy as before.

Each function has the same effect on every database; ``tests/store/test_inline_sql.py``
holds the two ways to one answer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store.sqlite_driver import InlineConnection
from loadbell.store.tables import DELIVERY_PENDING, deliveries, is_pending, run_status_changes


def sqlite3_of(conn: AsyncConnection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under ``conn`` when it is loadbell's inline SQLite driver
    (statements on it join ``conn``'s transaction); None otherwise."""
    if conn.dialect.name != "sqlite" or conn.sync_connection is None:
        return None
    driver = conn.sync_connection.connection.driver_connection
    return driver.raw if isinstance(driver, InlineConnection) else None


_ADD_STATUS_CHANGE = sa.insert(run_status_changes)
_ADD_STATUS_CHANGE_SQL = "INSERT INTO run_status_changes (run_id, status) VALUES (?, ?)"


async def add_status_change(conn: AsyncConnection, run_id: int, status: int) -> None:
    """A row of the run's status history (``at`` is the database's current time)."""
    raw = sqlite3_of(conn)
    if raw is not None:
        raw.execute(_ADD_STATUS_CHANGE_SQL, (run_id, status))
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
        return {r[0] for r in raw.execute(_PENDING_KEYS_SQL, (listed,))}
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
    "series",
    "attempts",
    "next_attempt_at",
    "lease_until",
    "lease_owner",
)
_INSERT_DELIVERIES = sa.insert(deliveries).returning(deliveries.c.id, sort_by_parameter_order=True)
_INSERT_DELIVERY_SQL = (
    f"INSERT INTO deliveries ({', '.join(DELIVERY_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in DELIVERY_COLUMNS)}) RETURNING id"
)


async def insert_deliveries(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert delivery rows (each with exactly :data:`DELIVERY_COLUMNS`); their ids, in
    order."""
    raw = sqlite3_of(conn)
    if raw is not None:
        ids = []
        for row in rows:
            cur = raw.execute(_INSERT_DELIVERY_SQL, tuple(row[c] for c in DELIVERY_COLUMNS))
            ids.append(int(cur.fetchall()[0][0]))  # all: the statement runs to its end
        return ids
    # One row (the usual case: one webhook) as a single execute: SQLAlchemy's executemany
    # with ordered RETURNING costs about twice as much for it.
    result = await conn.execute(_INSERT_DELIVERIES, rows[0] if len(rows) == 1 else list(rows))
    return [r[0] for r in result]
