"""SQL text for the delivery worker's hot statements, run through the driver.

The worker claims and records thousands of deliveries per second. Run through SQLAlchemy
Core's compiled execution, each of its statements cost 150-450 µs of CPU on a 2-core
machine (binding every parameter through its type, re-rendering expanding ``IN`` lists,
building and processing every result row), several times what SQLite itself spends. With
``exec_driver_sql`` the same statement costs 40-120 µs. So these few statements are
written as SQL text, once, and this module adapts them to the dialect:

- ``?`` placeholders become ``$1, $2, ...`` on PostgreSQL (asyncpg);
- ``{in_ints}`` / ``{in_texts}`` test membership in one list parameter, whatever its
  length, so each statement is prepared once: ``IN (SELECT value FROM json_each(?))`` on
  SQLite, ``= ANY(?::integer[])`` on PostgreSQL.

Values go in and come out as the driver has them, so :class:`Dialect` also converts the
few types involved (lists, timestamps, JSON) the way SQLAlchemy's column types store them;
the store tests run every statement on both databases.

:class:`Statements` runs them inside a transaction that SQLAlchemy opened (and commits):
through ``exec_driver_sql`` on PostgreSQL, and straight on the ``sqlite3`` connection on
SQLite, where even ``exec_driver_sql``'s own bookkeeping cost more than the statement.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store.db import json_dumps

_PLACEHOLDER = re.compile(r"\?")


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" or "postgresql"
    postgres: bool = field(init=False)  # asked once per value read: a plain attribute

    def __post_init__(self) -> None:
        object.__setattr__(self, "postgres", self.name == "postgresql")

    @functools.cache  # noqa: B019 - two instances at most, one per dialect
    def sql(self, template: str) -> str:
        if self.postgres:
            text = template.format(
                in_ints="= ANY(?::integer[])",
                in_texts="= ANY(?::text[])",
            )
            numbers = iter(range(1, 1 + text.count("?")))
            return _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", text)
        return template.format(
            in_ints="IN (SELECT value FROM json_each(?))",
            in_texts="IN (SELECT value FROM json_each(?))",
        )

    def members(self, values: Sequence[Any]) -> Any:
        """The parameter of ``{in_ints}`` / ``{in_texts}``."""
        return list(values) if self.postgres else json_dumps(list(values))

    def timestamp(self, value: datetime) -> Any:
        """A ``UTCDateTime`` column's value (tz-aware UTC in)."""
        if self.postgres:
            return value
        # SQLAlchemy's SQLite DATETIME storage: naive UTC, always with microseconds.
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def read_timestamp(self, value: str | datetime) -> datetime:
        if isinstance(value, str):  # SQLite
            value = datetime.fromisoformat(value)
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def json(self, value: Any) -> str:
        """A JSON column's value, on either driver (asyncpg's codec encodes text)."""
        return json_dumps(value)

    def read_json(self, value: Any) -> Any:
        # asyncpg decodes json columns itself (SQLAlchemy installs the codec); SQLite
        # hands back the text.
        return value if self.postgres else orjson.loads(value)


SQLITE = Dialect("sqlite")
POSTGRESQL = Dialect("postgresql")


def dialect_of(name: str) -> Dialect:
    return POSTGRESQL if name == "postgresql" else SQLITE


@dataclass(frozen=True)
class Statements:
    """The hot statements of one transaction, on its connection."""

    dialect: Dialect
    conn: AsyncConnection
    raw: sqlite3.Connection | None  # SQLite: statements run on it directly

    @classmethod
    async def on(cls, conn: AsyncConnection) -> Statements:
        dialect = dialect_of(conn.dialect.name)
        raw = None
        if not dialect.postgres:
            driver = (await conn.get_raw_connection()).driver_connection
            raw = getattr(driver, "raw", None)  # sqlite_driver.DirectConnection
        return cls(dialect, conn, raw)

    async def fetch(self, template: str, params: Sequence[Any] = ()) -> list[Any]:
        sql = self.dialect.sql(template)
        if self.raw is None:
            return list((await self.conn.exec_driver_sql(sql, tuple(params))).all())
        with _as_sqlalchemy_error(sql, params):
            return self.raw.execute(sql, params).fetchall()

    async def execute(self, template: str, params: Sequence[Any] = ()) -> None:
        """A statement that returns no rows."""
        sql = self.dialect.sql(template)
        if self.raw is None:
            await self.conn.exec_driver_sql(sql, tuple(params))
            return
        with _as_sqlalchemy_error(sql, params):
            self.raw.execute(sql, params)

    async def run_many(self, template: str, rows: list[tuple[Any, ...]]) -> None:
        sql = self.dialect.sql(template)
        if self.raw is None:
            await self.conn.exec_driver_sql(sql, rows)
            return
        with _as_sqlalchemy_error(sql, rows):
            self.raw.executemany(sql, rows)


@contextlib.contextmanager
def _as_sqlalchemy_error(sql: str, params: Any) -> Iterator[None]:
    """Raise sqlite3's errors as SQLAlchemy would have: callers handle SQLAlchemyError."""
    try:
        yield
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc
