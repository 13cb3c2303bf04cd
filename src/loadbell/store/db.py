"""Engine creation with the per-backend settings that make the outbox safe and fast."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from loadbell.settings import Settings
from loadbell.store.checkpoint import Checkpointer
from loadbell.store.sqlite_driver import creator
from loadbell.store.writegate import WriteGate

# A writer waits this long for SQLite's lock before giving up (milliseconds). Several
# processes (serve + worker) may share one file.
SQLITE_BUSY_TIMEOUT_MS = 10_000
READONLY = "loadbell_readonly"
RELAXED = "loadbell_relaxed"
_SYNC_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


def json_dumps(value: Any) -> str:
    """JSON text as loadbell's JSON columns store it."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def create_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    # orjson for JSON columns: every claim reads its events' contexts, every event writes one.
    kwargs.setdefault("json_serializer", json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if settings.is_sqlite:
        return _sqlite_engine(settings, **kwargs)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return create_async_engine(settings.database_url, pool_pre_ping=False, **kwargs)


def _sqlite_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    url = make_url(settings.database_url)
    cargs, cparams = url.get_dialect()().create_connect_args(url)
    cparams["timeout"] = SQLITE_BUSY_TIMEOUT_MS / 1000
    # SQLAlchemy hands a connection back to the pool in a task of its own, a turn of the
    # event loop after the ``async with`` ends; under load many connections are "closing"
    # at once. With the default pool (5 + 10 overflow) each one past that opened and
    # closed a SQLite connection and its thread per request.
    kwargs.setdefault("pool_size", 32)
    kwargs.setdefault("max_overflow", 32)
    # aiosqlite, with statements run on the event loop's thread (sqlite_driver.py).
    engine = create_async_engine(url, async_creator=creator(*cargs, **cparams), **kwargs)
    synchronous = settings.sqlite_synchronous

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (below); pysqlite's implicit BEGIN is DEFERRED.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job (checkpoint.py)
        cur.close()

    if cargs and cargs[0] not in ("", ":memory:"):
        checkpointer = Checkpointer(cargs[0]).start()

        @event.listens_for(engine.sync_engine, "engine_disposed")
        def _on_dispose(_engine: Any) -> None:
            checkpointer.stop()

    gate = WriteGate(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    gate.install(engine.sync_engine)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front. A DEFERRED transaction that later writes
        # can fail with "database is locked" without waiting, when two writers race.
        # Readers (see ``reader``) use a plain BEGIN: in WAL mode they never block writers.
        if conn.get_execution_options().get(READONLY):
            conn.exec_driver_sql("BEGIN")
            return
        gate.enter_for(conn)  # queue behind this process's other writers (writegate.py)
        try:
            level = synchronous
            if conn.get_execution_options().get(RELAXED):
                level = min(synchronous, "NORMAL", key=_SYNC_LEVELS.index)
            conn.connection.driver_connection.set_synchronous(level)
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            gate.leave_for(conn)
            raise

    return engine


@contextlib.asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """``engine.begin()`` without a turn of the event loop at its end, on SQLite.

    SQLAlchemy closes the connection of ``engine.begin()`` in a task of its own, so that a
    cancelled caller cannot leave it half closed: the connection goes back to the pool a
    loop turn later, and other tasks run before the caller goes on. A worker's claim was
    then woken by the very pokes its own result answered, and claimed again at once. On
    SQLite the close waits for no I/O (``sqlite_driver.py``), so nothing can interrupt it
    and it is done inline. Elsewhere this is ``engine.begin()``.
    """
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    conn = await engine.connect()
    try:
        async with conn.begin():
            yield conn
    finally:
        await conn.close()


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, for read-only work (no write lock on SQLite)."""
    return engine.execution_options(**{READONLY: True})


def relaxed(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, for writes that may be lost in a power cut.

    The delivery worker's claims and results: losing one only means a delivery is sent
    again, which at-least-once delivery allows. On SQLite they commit with
    ``synchronous=NORMAL`` (no fsync per commit in WAL mode; it survives a crash of the
    process, not of the machine), while events staged by the API keep the configured
    ``LOADBELL_SQLITE_SYNCHRONOUS``. Elsewhere it changes nothing.
    """
    return engine.execution_options(**{RELAXED: True})


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def sqlite_path(database_url: str) -> str:
    """The file behind a sqlite URL."""
    path = make_url(database_url).database
    if not path:
        raise ValueError(f"{database_url} names no SQLite file")
    return path
