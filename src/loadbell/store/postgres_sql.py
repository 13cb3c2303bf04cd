"""The run update's statements straight on asyncpg, inside SQLAlchemy's transaction.

On PostgreSQL each statement of ``PATCH /runs/{id}`` went through SQLAlchemy Core: about
70 µs of Python per statement (compiled-cache lookup, parameter and result processing, the
adapter's greenlet switches) on top of asyncpg's 30-40 µs with its round trip
(docs/benchmarks.md, "The API path on PostgreSQL"). As ``store/inline_sql.py`` does with
``sqlite3``, these statements run on the driver's own connection, reached through
SQLAlchemy's public ``Connection.connection.driver_connection``, but only once SQLAlchemy
has begun the transaction (``asyncpg.Connection.is_in_transaction``): they join it, and
its commit or rollback covers them. The first statement of a transaction (and any on a
connection in autocommit) goes through SQLAlchemy, which sends ``BEGIN`` before it.

asyncpg keeps each statement prepared (its statement cache, per connection). Values: the
engine's connections have SQLAlchemy's JSON codecs (a JSON parameter is text, a JSON column
comes back decoded with the engine's deserializer), and ``timestamptz`` comes back aware in
UTC, as ``UTCDateTime`` returns it. Errors come out as SQLAlchemy's, as its asyncpg dialect
translates them, so the API answers them as before (store/db.py: ``unavailable``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store.db import json_dumps
from loadbell.store.tables import DELIVERY_PENDING

# The channel workers LISTEN on for new deliveries (delivery/wakeup.py).
NOTIFY_CHANNEL = "loadbell_outbox"


def asyncpg_of(conn: AsyncConnection) -> asyncpg.Connection | None:
    """The asyncpg connection under ``conn`` when its transaction has begun (statements on
    it join that transaction); None otherwise, and on any other database."""
    if conn.dialect.name != "postgresql" or conn.sync_connection is None:
        return None
    driver = conn.sync_connection.connection.driver_connection
    if isinstance(driver, asyncpg.Connection) and driver.is_in_transaction():
        return driver
    return None


# asyncpg's errors as SQLAlchemy's asyncpg dialect raises them (most specific first).
_AS_SQLALCHEMY: tuple[tuple[type[BaseException], type[sa_exc.DBAPIError]], ...] = (
    (asyncpg.IntegrityConstraintViolationError, sa_exc.IntegrityError),
    (asyncpg.SyntaxOrAccessError, sa_exc.ProgrammingError),
    (asyncpg.InternalServerError, sa_exc.InternalError),
    (asyncpg.InterfaceError, sa_exc.InterfaceError),  # a connection that is gone, too
    (asyncpg.PostgresConnectionError, sa_exc.OperationalError),
    (OSError, sa_exc.OperationalError),  # the socket failed
    (asyncpg.PostgresError, sa_exc.DBAPIError),
)


@contextlib.contextmanager
def as_sqlalchemy_errors(statement: str) -> Iterator[None]:
    """Raise an asyncpg error of a statement run beside SQLAlchemy as SQLAlchemy's dialect
    raises it (an integrity error stays one; a lost connection is unavailable: 503)."""
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        kind = next(v for k, v in _AS_SQLALCHEMY if isinstance(exc, k))
        raise kind(statement, None, exc) from exc


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value


# Runs

RUN_COLUMNS = (
    "id",
    "load_test_id",
    "project_id",
    "organization_id",
    "status",
    "result",
    "trigger",
    "user_id",
    "metrics",
    "created_at",
    "updated_at",
    "started_at",
    "ended_at",
    "comparison",
)
_RUN_JSON = frozenset({"metrics", "comparison"})
_RUN_WITH_NAMES = (
    f"SELECT {', '.join(f'r.{c}' for c in RUN_COLUMNS)}, u.name AS user_name, "
    "lt.name AS load_test_name, p.name AS project_name, o.name AS organization_name "
    "FROM runs r LEFT OUTER JOIN users u ON u.id = r.user_id "
    "JOIN load_tests lt ON lt.id = r.load_test_id "
    "JOIN projects p ON p.id = lt.project_id "
    "JOIN organizations o ON o.id = p.organization_id "
    "WHERE r.id = $1"
)
_RUN_WITH_NAMES_LOCKED = _RUN_WITH_NAMES + " FOR UPDATE OF r"


async def run_with_names(
    raw: asyncpg.Connection, run_id: int, *, lock: bool
) -> dict[str, Any] | None:
    """``store/context.py: run_with_names`` on asyncpg: the same dict."""
    sql = _RUN_WITH_NAMES_LOCKED if lock else _RUN_WITH_NAMES
    with as_sqlalchemy_errors(sql):
        row = await raw.fetchrow(sql, run_id)
    return dict(row.items()) if row is not None else None


@functools.cache
def _update_run_sql(columns: tuple[str, ...], status_change: bool) -> str:
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=2))
    update = f"UPDATE runs SET {sets} WHERE id = $1"
    if not status_change:
        return update
    # The history row in the same round trip; a data-modifying WITH runs whatever the
    # outer statement reads.
    status = columns.index("status") + 2
    return (
        f"WITH changed AS ({update} RETURNING id) INSERT INTO run_status_changes "
        f"(run_id, status) SELECT id, ${status} FROM changed"
    )


def _run_value(column: str, value: Any) -> Any:
    if column in _RUN_JSON:  # as SQLAlchemy's JSON type binds it: None as JSON null
        return json_dumps(value)
    if isinstance(value, datetime):
        return _utc(value)
    return value


async def update_run(
    raw: asyncpg.Connection, run_id: int, values: Mapping[str, Any], status_change: bool
) -> None:
    """Set these columns of the run; with ``status_change``, also add the row of its status
    history for ``values["status"]``."""
    columns = tuple(sorted(values))
    sql = _update_run_sql(columns, status_change)
    with as_sqlalchemy_errors(sql):
        await raw.execute(sql, run_id, *(_run_value(c, values[c]) for c in columns))


_ADD_STATUS_CHANGE = "INSERT INTO run_status_changes (run_id, status) VALUES ($1, $2)"


async def add_status_change(raw: asyncpg.Connection, run_id: int, status: int) -> None:
    with as_sqlalchemy_errors(_ADD_STATUS_CHANGE):
        await raw.execute(_ADD_STATUS_CHANGE, run_id, status)


# Events and deliveries


def insert_event_sql(columns: Sequence[str]) -> str:
    return (
        f"INSERT INTO events ({', '.join(columns)}) "
        f"VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))}) RETURNING id"
    )


async def insert_event(raw: asyncpg.Connection, sql: str, row: Sequence[Any]) -> int:
    """``row``: the event's values in the statement's column order, JSON as text."""
    with as_sqlalchemy_errors(sql):
        return int(await raw.fetchval(sql, *row))


# The pending value as a literal, as is_pending writes it: the partial index needs it.
_PENDING_KEYS = (
    "SELECT order_key FROM deliveries WHERE order_key = ANY($1::varchar[]) "
    f"AND status = '{DELIVERY_PENDING}'"
)


async def pending_order_keys(raw: asyncpg.Connection, keys: Sequence[str]) -> set[str]:
    with as_sqlalchemy_errors(_PENDING_KEYS):
        return {r[0] for r in await raw.fetch(_PENDING_KEYS, list(keys))}


# Each delivery column's type, for the arrays of a statement that inserts several rows.
DELIVERY_TYPES = {
    "uuid": "varchar",
    "event_id": "int",
    "channel_id": "int",
    "target": "varchar",
    "order_key": "varchar",
    "status": "varchar",
    "reason": "text",
    "series": "int",
    "attempts": "int",
    "next_attempt_at": "float8",
    "lease_until": "float8",
    "lease_owner": "varchar",
    "organization_id": "int",
    "event_type": "varchar",
    "run_id": "int",
}
# Tells the workers that deliveries are waiting (delivery/wakeup.py), as part of the
# statement that stages them: delivered at commit, coalesced to one per transaction.
_NOTIFY = f", pg_notify('{NOTIFY_CHANNEL}', '')"


@functools.cache
def _insert_deliveries_sql(columns: tuple[str, ...], many: bool, notify: bool) -> str:
    returning = "RETURNING id" + (_NOTIFY if notify else "")
    if not many:
        values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        return f"INSERT INTO deliveries ({', '.join(columns)}) VALUES ({values}) {returning}"
    arrays = ", ".join(f"${i}::{DELIVERY_TYPES[c]}[]" for i, c in enumerate(columns, start=1))
    # WITH ORDINALITY and ORDER BY: ids are handed out in the rows' order, and the ids
    # come back in it too (sorted by the caller).
    return (
        f"INSERT INTO deliveries ({', '.join(columns)}) "
        f"SELECT {', '.join(f'v.{c}' for c in columns)} FROM unnest({arrays}) "
        f"WITH ORDINALITY AS v({', '.join(columns)}, n) ORDER BY v.n {returning}"
    )


async def insert_deliveries(
    raw: asyncpg.Connection,
    columns: tuple[str, ...],
    rows: Sequence[Mapping[str, Any]],
    *,
    notify: bool,
) -> list[int]:
    """Insert delivery rows (each with exactly ``columns``); their ids, in order. With
    ``notify``, the workers are told at commit (NOTIFY in the same statement)."""
    sql = _insert_deliveries_sql(columns, len(rows) > 1, notify)
    with as_sqlalchemy_errors(sql):
        if len(rows) == 1:
            return [int(await raw.fetchval(sql, *(rows[0][c] for c in columns)))]
        result = await raw.fetch(sql, *([row[c] for row in rows] for c in columns))
    # A serial's ids rise in the order the rows were inserted.
    return sorted(int(r[0]) for r in result)


NOTIFY = f"NOTIFY {NOTIFY_CHANNEL}"

# A row keeps the lease it was offered only when no earlier delivery of its ordered
# sequence is still pending (store/outbox.py). The statement's snapshot does not hold the
# rows it inserts, so this reads the deliveries staged before, as a query of its own would.
_KEEPS_LEASE = (
    "v.lease_owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM deliveries p "
    f"WHERE p.order_key = v.order_key AND p.status = '{DELIVERY_PENDING}')"
)


@functools.cache
def stage_sql(event_columns: tuple[str, ...], columns: tuple[str, ...], many: bool) -> str:
    """One statement for an event and its deliveries: the event, the delivery rows (their
    ``event_id`` the new event's), each row's lease kept or dropped, and ``NOTIFY`` when a
    pending row is left for the claims. Parameters: the event's values, then the rows'
    (arrays with ``many``), in ``columns`` order but ``event_id``. Rows: the event id, each
    delivery's id (in the rows' order) and whether it kept its lease."""
    n = len(event_columns)
    marks = ", ".join(f"${i}" for i in range(1, n + 1))
    event = f"INSERT INTO events ({', '.join(event_columns)}) VALUES ({marks}) RETURNING id"
    given = [c for c in columns if c != "event_id"]
    typed = [(f"${i}", DELIVERY_TYPES[c], c) for i, c in enumerate(given, start=n + 1)]
    if many:
        arrays = ", ".join(f"{p}::{t}[]" for p, t, _ in typed)
        rows = f"unnest({arrays}) WITH ORDINALITY AS v({', '.join(given)}, n)"
    else:
        rows = f"(SELECT {', '.join(f'{p}::{t} AS {c}' for p, t, c in typed)}, 1 AS n) AS v"
    values = [
        "e.id"
        if c == "event_id"
        else f"CASE WHEN {_KEEPS_LEASE} THEN v.{c} END"
        if c in ("lease_owner", "lease_until")
        else f"v.{c}"
        for c in columns
    ]
    return (
        f"WITH e AS ({event}), d AS (INSERT INTO deliveries ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM e, {rows} ORDER BY v.n "
        "RETURNING id, lease_owner IS NOT NULL AS leased, "
        f"status = '{DELIVERY_PENDING}' AND lease_owner IS NULL AS waiting) "
        "SELECT (SELECT id FROM e), d.id, d.leased, "
        f"CASE WHEN d.waiting THEN pg_notify('{NOTIFY_CHANNEL}', '') IS NULL END "
        "FROM d ORDER BY d.id"
    )


async def stage(
    raw: asyncpg.Connection, sql: str, event: Sequence[Any], rows: Sequence[Sequence[Any]]
) -> tuple[int, list[int], list[bool]]:
    """Run :func:`stage_sql`'s statement: ``event`` its values, ``rows`` each row's in its
    column order. Returns the event id, the ids and which rows kept their lease."""
    args = [*rows[0]] if len(rows) == 1 else [list(c) for c in zip(*rows, strict=True)]
    with as_sqlalchemy_errors(sql):
        result = await raw.fetch(sql, *event, *args)
    return int(result[0][0]), [int(r[1]) for r in result], [bool(r[2]) for r in result]


async def notify(raw: asyncpg.Connection) -> None:
    with as_sqlalchemy_errors(NOTIFY):
        await raw.execute(NOTIFY)


# Channels and mutes: the fan-out's reads


def live_channels_sql(fields: Sequence[str]) -> str:
    """``store/inline_sql.py``'s live channels with overrides, with PostgreSQL's
    parameters: $1 the project (NULL for none), $2 the organization."""
    return (
        f"SELECT {', '.join(f'c.{f}' for f in fields)}, ov.id, ov.enabled, ov.config, "
        "ov.secrets FROM channels c "
        "LEFT OUTER JOIN channel_overrides ov ON ov.channel_id = c.id AND ov.project_id = $1 "
        "AND c.project_id IS NULL "
        "WHERE c.organization_id = $2 AND c.deleted_at IS NULL "
        "AND (c.project_id IS NULL OR c.project_id = $1) ORDER BY c.id"
    )


async def fetch(raw: asyncpg.Connection, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of a statement, errors as SQLAlchemy's."""
    with as_sqlalchemy_errors(sql):
        rows: list[asyncpg.Record] = await raw.fetch(sql, *args)
    return rows
