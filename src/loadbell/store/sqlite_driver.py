"""aiosqlite, with SQLite's calls made on the event loop's thread unless they must wait.

aiosqlite runs every sqlite3 call on the connection's own thread. Each call is a round trip
between the event loop and that thread (a queue put, a thread wake-up, a loop wake-up, a
greenlet switch): about 150 µs of CPU on a 2-core machine, while SQLite runs loadbell's
indexed statements in 5-20 µs. Worse, every round trip yields to the event loop in the
middle of a transaction. Under load a write transaction then holds SQLite's write lock (and
the process's write gate, ``writegate.py``) for several turns of a busy loop, and every
other writer queues behind it: at 200 run updates per second the API answered about 110
per second with the CPU half idle.

So this driver runs statements, COMMIT and ROLLBACK directly, in the caller's greenlet: a
transaction runs start to finish without yielding, and the write lock is held only as long
as SQLite needs it. The one call that can wait a long time is ``BEGIN IMMEDIATE`` when
*another process* holds the write lock (``loadbell worker`` beside ``loadbell serve``). It is
tried first without waiting; if the lock is taken it is re-run on the connection's thread,
under SQLite's busy handler, so the event loop never sleeps in it. Connecting and closing
also stay on the thread.

What a COMMIT costs on the loop is the journal's fsync (``synchronous=FULL``; about
0.4 ms on the development machine's disk). The worker's own transactions use
``synchronous=NORMAL`` (``db.relaxed``), which syncs only at checkpoints.

Rows are fetched whole (loadbell does not stream query results).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import aiosqlite

_Result = tuple[list[Any], Any, int, int | None]  # rows, description, rowcount, lastrowid


class DirectCursor:
    """The cursor SQLAlchemy's aiosqlite adapter drives, answered without a thread hop."""

    def __init__(self, conn: DirectConnection) -> None:
        self._conn = conn
        self._rows: list[Any] = []
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self.arraysize = 1

    async def execute(self, sql: str, parameters: Any = None) -> DirectCursor:
        params = () if parameters is None else parameters
        run = self._runner(lambda cur: cur.execute(sql, params))
        if sql.startswith("BEGIN IMMEDIATE"):
            self._keep(await self._conn.begin_immediate(run))
        else:
            self._keep(run())
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> DirectCursor:
        self._keep(self._runner(lambda cur: cur.executemany(sql, parameters))())
        return self

    def _runner(self, action: Callable[[sqlite3.Cursor], object]) -> Callable[[], _Result]:
        def run() -> _Result:
            cur = self._conn.raw.cursor()
            try:
                action(cur)
                rows = cur.fetchall() if cur.description is not None else []
                return rows, cur.description, cur.rowcount, cur.lastrowid
            finally:
                cur.close()

        return run

    def _keep(self, result: _Result) -> None:
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

    async def __aenter__(self) -> DirectCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class DirectConnection(aiosqlite.Connection):
    busy_timeout_ms = 0  # set by ``creator``: how long BEGIN IMMEDIATE may wait on the thread
    _synchronous: str | None = None  # as last set by ``set_synchronous``

    @property
    def raw(self) -> sqlite3.Connection:
        return self._conn

    def cursor(self) -> DirectCursor:  # type: ignore[override]
        return DirectCursor(self)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    def set_synchronous(self, level: str) -> None:
        """``PRAGMA synchronous`` for the next transactions (run only when it changes)."""
        if level != self._synchronous:
            self._conn.execute(f"PRAGMA synchronous = {level}")
            self._synchronous = level

    async def begin_immediate(self, run: Callable[[], _Result]) -> _Result:
        """Take the write lock at once if it is free; otherwise wait for it on the thread."""
        raw = self._conn
        raw.execute("PRAGMA busy_timeout = 0")
        try:
            return run()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                raise
        finally:
            raw.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        result: _Result = await self._execute(run)  # type: ignore[no-untyped-call]
        return result


def creator(database: str, **kwargs: Any) -> Callable[[], Any]:
    """An ``async_creator`` for ``create_async_engine``: what ``aiosqlite.connect`` does,
    with :class:`DirectConnection`. ``timeout`` (seconds) is SQLite's busy timeout."""
    kwargs["check_same_thread"] = False  # opened on aiosqlite's thread, used from the loop's

    async def connect() -> DirectConnection:
        conn = DirectConnection(lambda: sqlite3.connect(database, **kwargs), 64)
        conn.busy_timeout_ms = round(float(kwargs.get("timeout", 5.0)) * 1000)
        conn._thread.daemon = True  # as SQLAlchemy does: never block interpreter exit
        await conn  # starts the thread and opens the sqlite3 connection on it
        return conn

    return connect
