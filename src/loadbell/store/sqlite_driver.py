"""SQLite statements run on the event loop's thread, and writers wait without blocking it.

aiosqlite runs every sqlite3 call on a thread of the connection's own. Each call is a round
trip between the event loop and that thread (a queue put, a thread wake-up, a loop wake-up,
a greenlet switch): about 150 µs of CPU on a 2-core machine, while SQLite runs loadbell's
indexed statements in 5-20 µs. Worse, every round trip yields to the event loop in the middle
of a transaction, so under load a write transaction held SQLite's write lock across several
turns of a busy loop while every other writer queued behind it.

So :class:`InlineConnection` (an ``aiosqlite.Connection``, as SQLAlchemy's aiosqlite dialect
expects from ``async_creator``) answers its cursors, COMMIT and ROLLBACK directly on the
``sqlite3`` connection, in the caller's greenlet: a transaction runs start to finish
without yielding, and holds the write lock only as long as SQLite needs it. Only its public
methods are overridden; the connection is opened inline too, and aiosqlite's thread closes it.

Waiting is the one thing that must not happen on the loop. A writer takes the lock with
``BEGIN IMMEDIATE`` (db.py); :meth:`InlineConnection.begin_write` tries it without SQLite's
busy handler,
and when another connection holds the lock (a ``loadbell worker`` beside ``loadbell serve``,
the checkpointer, a transaction of this process that awaited something in the middle) it
sleeps asynchronously and tries again, so the loop keeps serving meanwhile. Reads never
wait for writers in WAL mode.

Rows are fetched whole (loadbell does not stream query results).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import Any

import aiosqlite
from sqlalchemy import exc as sa_exc

# Python's sqlite3 (3.11) binds an int, float, str or bytearray as it is, and looks for an
# adapter for any other value, None included: it asks sqlite3.PrepareProtocol for
# ``__adapt__``, which it never has, and the AttributeError it raises and drops has its
# message formatted each time. A worker binds two None a delivery (the error columns of a
# success); that search and the queue's datetime.replace calls were 4.8 % of its
# instructions (docs/decisions.md, D81). A registered adapter is found first: this one is a
# C-level lookup in an empty mapping, so None is adapted to None at once. The registry is
# the process's, so every sqlite3 connection in it, SQLAlchemy's included, binds None this
# way; what it binds does not change.
_NOTHING: MappingProxyType[None, None] = MappingProxyType({})
_as_null: Callable[[None], None] = _NOTHING.get
sqlite3.register_adapter(type(None), _as_null)

# How long a writer waits for another connection's write lock before giving up ("database
# is locked"), in seconds. Several processes (serve + worker) may share one file.
BUSY_TIMEOUT = 10.0
# SQLite's own busy handler, for the rare reader that meets a lock (WAL recovery): it waits
# on the loop's thread, so only briefly (milliseconds).
READ_BUSY_TIMEOUT_MS = 50
# Sleeps between tries of BEGIN IMMEDIATE: short at first (most write transactions take
# well under a millisecond), then at most this long.
_FIRST_RETRY, _MAX_RETRY = 0.0005, 0.02  # seconds

_Result = tuple[list[Any], Any, int, int | None]  # rows, description, rowcount, lastrowid


async def begin_immediate(raw: sqlite3.Connection, timeout: float = BUSY_TIMEOUT) -> None:
    """``BEGIN IMMEDIATE`` on ``raw`` without blocking the event loop while the write lock is
    taken elsewhere. Raises sqlite3.OperationalError ("database is locked") after
    ``timeout`` seconds. ``raw``'s busy timeout is the readers' again afterwards
    (:meth:`InlineConnection.begin_write` leaves it off instead)."""
    raw.execute("PRAGMA busy_timeout = 0")
    try:
        await take_write_lock(raw, timeout)
    finally:
        raw.execute(f"PRAGMA busy_timeout = {READ_BUSY_TIMEOUT_MS}")


async def take_write_lock(raw: sqlite3.Connection, timeout: float = BUSY_TIMEOUT) -> None:
    """``BEGIN IMMEDIATE`` on ``raw``, whose busy timeout is already 0, tried again after a
    sleep while another connection holds the write lock (:func:`begin_immediate`)."""
    delay, deadline = _FIRST_RETRY, None
    while True:
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
        now = time.monotonic()
        deadline = deadline or now + timeout
        if now >= deadline:
            raise sqlite3.OperationalError(
                f"database is locked: another connection held the write lock for {timeout:g} s"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, _MAX_RETRY)


def in_wal_mode(raw: sqlite3.Connection) -> bool:
    """Whether ``raw``'s database is in WAL mode: only there does a transaction that holds
    the write lock never wait for another lock (in a rollback journal, COMMIT waits for
    readers)."""
    return str(raw.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"


class InlineCursor:
    """The cursor SQLAlchemy's aiosqlite adapter drives, answered without a thread hop."""

    def __init__(self, conn: InlineConnection) -> None:
        self._conn = conn
        self._rows: list[Any] = []
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self.arraysize = 1

    async def execute(self, sql: str, parameters: Any = None) -> InlineCursor:
        if sql.startswith("BEGIN IMMEDIATE"):
            await self._conn.begin_write()
            self._keep(([], None, -1, None))
            return self
        params = () if parameters is None else parameters
        self._keep(self._run(lambda cur: cur.execute(sql, params)))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._keep(self._run(lambda cur: cur.executemany(sql, parameters)))
        return self

    def _run(self, action: Callable[[sqlite3.Cursor], object]) -> _Result:
        cur = self._conn.for_statement().cursor()
        try:
            action(cur)
            rows = cur.fetchall() if cur.description is not None else []
            return rows, cur.description, cur.rowcount, cur.lastrowid
        finally:
            cur.close()

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

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection whose statements run inline (see the module docstring)."""

    def __init__(self, raw: sqlite3.Connection, busy_timeout: float) -> None:
        self.raw: sqlite3.Connection | None = raw
        self.busy_timeout = busy_timeout
        # SQLite's busy timeout on ``raw`` is 0 (set by begin_write), not the readers'.
        self._busy_off = False
        self._wal: bool | None = None  # the file is in WAL mode (looked up once)
        super().__init__(lambda: raw, iter_chunk_size=64)

    def _opened(self) -> sqlite3.Connection:
        if self.raw is None:
            raise sqlite3.ProgrammingError("the connection is not open")
        return self.raw

    async def begin_write(self) -> None:
        """:func:`begin_immediate`, leaving the busy timeout at 0 afterwards.

        Once ``BEGIN IMMEDIATE`` holds the write lock, nothing in the transaction waits for
        a lock in WAL mode (its reads have their snapshot, its writes the lock), so the
        timeout matters again only for what runs outside a write transaction, and
        :meth:`for_statement` sets it back first. Write after write on one connection (the
        pool hands out the one returned last) then costs no PRAGMA at all, where setting
        the timeout to 0 and back cost two statements per transaction (D71).
        """
        raw = self._opened()
        if self._wal is None:
            self._wal = in_wal_mode(raw)
        if not self._wal:
            # A rollback journal (WAL could not be set): COMMIT may wait for readers, with
            # the readers' timeout, as before.
            await begin_immediate(raw, self.busy_timeout)
            return
        if not self._busy_off:
            raw.execute("PRAGMA busy_timeout = 0")
            self._busy_off = True
        await take_write_lock(raw, self.busy_timeout)

    def for_statement(self) -> sqlite3.Connection:
        """The ``sqlite3`` connection, for a statement about to run: outside a transaction
        its busy timeout is the readers' again (a read may meet a lock: WAL recovery)."""
        raw = self._opened()
        if self._busy_off and not raw.in_transaction:
            raw.execute(f"PRAGMA busy_timeout = {READ_BUSY_TIMEOUT_MS}")
            self._busy_off = False
        return raw

    def cursor(self) -> InlineCursor:  # type: ignore[override]
        return InlineCursor(self)

    async def commit(self) -> None:
        self._opened().commit()

    async def rollback(self) -> None:
        self._opened().rollback()


def creator(database: str, *, busy_timeout: float = BUSY_TIMEOUT, **kwargs: Any) -> Any:
    """An ``async_creator`` for ``create_async_engine``: what ``aiosqlite.connect`` does,
    with :class:`InlineConnection`. ``kwargs`` go to ``sqlite3.connect``."""
    # Used from the loop's thread. No implicit BEGIN: db.py emits BEGIN or BEGIN IMMEDIATE
    # itself.
    kwargs.update(
        check_same_thread=False, isolation_level=None, timeout=READ_BUSY_TIMEOUT_MS / 1000
    )

    async def connect() -> InlineConnection:
        # Opened here, inline like every statement of this driver, so that a file that
        # cannot be opened fails before aiosqlite's thread starts: after a failed open,
        # aiosqlite stops its thread without waiting, and when the process then exits (a
        # command that reports the error), the thread's last message finds the event loop
        # closed and prints a traceback.
        raw = sqlite3.connect(database, **kwargs)
        conn = _daemonic(lambda: InlineConnection(raw, busy_timeout))
        await conn  # starts aiosqlite's thread, which only hands the connection back
        return conn

    return connect


def _daemonic(build: Callable[[], InlineConnection]) -> InlineConnection:
    """Build the connection on a daemon thread.

    A thread is a daemon when the thread that creates it is one, and aiosqlite creates its
    connection thread when the connection is built. A daemon thread never holds the
    interpreter open at exit, which SQLAlchemy also makes sure of for the aiosqlite
    connections it opens itself: a connection someone forgot to close must not hang
    ``loadbell`` at exit.
    """
    built: list[InlineConnection] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            built.append(build())
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    thread = threading.Thread(target=run, name="loadbell-sqlite-connect", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return built[0]


# sqlite3's errors as SQLAlchemy raises them, by the same rule (the class of the same name).
_AS_SQLALCHEMY: dict[type[sqlite3.Error], type[sa_exc.DBAPIError]] = {
    sqlite3.OperationalError: sa_exc.OperationalError,
    sqlite3.IntegrityError: sa_exc.IntegrityError,
    sqlite3.ProgrammingError: sa_exc.ProgrammingError,
    sqlite3.DataError: sa_exc.DataError,
    sqlite3.NotSupportedError: sa_exc.NotSupportedError,
    sqlite3.InternalError: sa_exc.InternalError,
    sqlite3.InterfaceError: sa_exc.InterfaceError,
    sqlite3.DatabaseError: sa_exc.DatabaseError,
}


def as_sqlalchemy_errors(statement: str) -> SQLAlchemyErrors:
    """Raise a ``sqlite3`` error of a statement run beside SQLAlchemy (on the connection it
    manages) as SQLAlchemy would have raised it, so that the API answers it the same way
    (``database is locked`` is a 503, store/db.py: ``unavailable``)."""
    return SQLAlchemyErrors(statement)


class SQLAlchemyErrors:
    """The context manager of :func:`as_sqlalchemy_errors`. A class, not a generator under
    ``contextlib.contextmanager``: a run update enters about ten of them, and each generator
    cost some 1.3 µs more to make, start and finish (D71)."""

    __slots__ = ("statement",)

    def __init__(self, statement: str) -> None:
        self.statement = statement

    def __enter__(self) -> None:
        return None

    def __exit__(self, _kind: object, exc: BaseException | None, _tb: object) -> None:
        if isinstance(exc, sqlite3.Error):
            kind = next((v for k, v in _AS_SQLALCHEMY.items() if isinstance(exc, k)), None)
            raise (kind or sa_exc.DBAPIError)(self.statement, None, exc) from exc
