"""One SQLite writer at a time per process, queued in arrival order on an asyncio lock.

SQLite lets one connection write at a time. Left alone, a second writer in the same process
waits in SQLite's busy handler, which polls the lock with sleeps of 1, 2, 5, 10, 15, 20,
25 ... 100 ms. Under load (API requests, worker claims and result flushes all writing) a
writer then waits far longer than the transaction ahead of it lasts, and not in arrival
order: at 200 run updates per second the API's p99 went from milliseconds to seconds. With
the gate a writer waits on an asyncio lock, wakes as soon as the previous transaction has
committed or rolled back, and writers go first come, first served.

Writers in other processes (a separate ``loadbell worker``) still meet the busy handler;
the gate only orders writers that share an engine.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.util.concurrency import await_only, in_greenlet


class WriteGate:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout  # seconds a writer waits before "database is locked"
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holder: Any = None  # the DBAPI connection inside a write transaction

    def enter(self, dbapi_connection: Any) -> None:
        """Wait for the gate. Called from SQLAlchemy's sync layer inside its greenlet."""
        if self._holder is dbapi_connection or not in_greenlet():
            return
        lock = self._lock_for_running_loop()
        if lock.locked():
            try:
                await_only(_acquire(lock, self.timeout))
            except TimeoutError:
                raise OperationalError(
                    "BEGIN IMMEDIATE",
                    None,
                    sqlite3.OperationalError(
                        f"database is locked: waited {self.timeout:g} s for another "
                        "transaction of this process"
                    ),
                ) from None
        else:
            await_only(lock.acquire())  # free: returns without yielding to the loop
        self._holder = dbapi_connection

    def leave(self, dbapi_connection: Any) -> None:
        if dbapi_connection is not None and self._holder is dbapi_connection:
            self._holder = None
            assert self._lock is not None
            self._lock.release()

    def _lock_for_running_loop(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop, self._holder = asyncio.Lock(), loop, None
        return self._lock

    def install(self, engine: Engine) -> None:
        """Release the gate once a transaction has *finished* committing or rolling back.

        ConnectionEvents.commit fires before the COMMIT runs; releasing there would let the
        next writer meet the busy handler while the COMMIT (and its fsync) is under way.
        So the dialect's own commit and rollback are wrapped: they also serve the pool's
        reset-on-return. A connection the pool invalidates, closes or takes back releases
        the gate as well.
        """
        dialect = engine.dialect
        base_commit, base_rollback = dialect.do_commit, dialect.do_rollback

        def do_commit(proxied: Any) -> None:
            try:
                base_commit(proxied)
            finally:
                self.leave(getattr(proxied, "dbapi_connection", proxied))

        def do_rollback(proxied: Any) -> None:
            try:
                base_rollback(proxied)
            finally:
                self.leave(getattr(proxied, "dbapi_connection", proxied))

        dialect.do_commit = do_commit  # type: ignore[method-assign, assignment]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign, assignment]

        @event.listens_for(engine, "invalidate")
        @event.listens_for(engine, "soft_invalidate")
        def _on_invalidate(dbapi_connection: Any, _record: Any, _exc: Any) -> None:
            self.leave(dbapi_connection)

        # Last resorts, so a connection that never rolled back (garbage-collected inside a
        # transaction, closed by the pool) cannot keep the gate shut for good.
        @event.listens_for(engine, "checkin")
        @event.listens_for(engine, "close")
        def _on_release(dbapi_connection: Any, _record: Any) -> None:
            self.leave(dbapi_connection)

        @event.listens_for(engine, "close_detached")
        def _on_close_detached(dbapi_connection: Any) -> None:
            self.leave(dbapi_connection)

    def enter_for(self, conn: Connection) -> None:
        self.enter(conn.connection.dbapi_connection)

    def leave_for(self, conn: Connection) -> None:
        self.leave(conn.connection.dbapi_connection)


async def _acquire(lock: asyncio.Lock, timeout: float) -> None:
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for can time out *after* the lock
    # was granted and leave it held by nobody.
    async with asyncio.timeout(timeout):
        await lock.acquire()
