"""aiosqlite with one thread hop per statement instead of four.

aiosqlite runs each sqlite3 call on its connection's thread, and SQLAlchemy's adapter makes
four such calls per statement: create a cursor, execute, fetch all rows, close the cursor.
Each is a round trip between the event loop and that thread (a queue put, a thread wake-up,
a loop wake-up, a greenlet switch), which on a 2-core machine cost ~250 µs per statement,
several times what SQLite spends running it. Here ``execute`` does all four on the thread in
one call and keeps the rows; ``fetch*`` and ``close`` then answer without a hop.

Nothing else changes: the same sqlite3 connection, thread, transactions and errors. Rows
are fetched whole (loadbell does not stream query results).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import aiosqlite


class OneHopCursor:
    """The cursor SQLAlchemy's aiosqlite adapter drives, answered from one thread call."""

    def __init__(self, conn: OneHopConnection) -> None:
        self._conn = conn
        self._rows: list[Any] = []
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self.arraysize = 1

    async def execute(self, sql: str, parameters: Any = None) -> OneHopCursor:
        params = () if parameters is None else parameters
        await self._run(lambda cur: cur.execute(sql, params))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneHopCursor:
        await self._run(lambda cur: cur.executemany(sql, parameters))
        return self

    async def _run(self, action: Callable[[sqlite3.Cursor], object]) -> None:
        def on_thread() -> tuple[list[Any], Any, int, int | None]:
            cur = self._conn._conn.cursor()
            try:
                action(cur)
                rows = cur.fetchall() if cur.description is not None else []
                return rows, cur.description, cur.rowcount, cur.lastrowid
            finally:
                cur.close()

        result = await self._conn._execute(on_thread)  # type: ignore[no-untyped-call]
        self._rows, self._description, self._rowcount, self._lastrowid = result

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = self.arraysize if size is None else size
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        self._rows = []

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._lastrowid

    async def __aenter__(self) -> OneHopCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class OneHopConnection(aiosqlite.Connection):
    def cursor(self) -> OneHopCursor:  # type: ignore[override]
        # aiosqlite's makes the sqlite3 cursor on its thread (a hop); this one is lazy.
        return OneHopCursor(self)


def creator(database: str, **kwargs: Any) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine``: what ``aiosqlite.connect`` does,
    with :class:`OneHopConnection`."""

    async def connect() -> OneHopConnection:
        conn = OneHopConnection(lambda: sqlite3.connect(database, **kwargs), 64)
        conn._thread.daemon = True  # as SQLAlchemy does: never block interpreter exit
        await conn  # starts the thread and opens the sqlite3 connection on it
        return conn

    return connect
