"""Engine creation with the per-backend settings that make the outbox safe and fast."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import AdaptedConnection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from loadbell.settings import Settings
from loadbell.store.checkpoint import Checkpointer
from loadbell.store.optimize import Optimizer
from loadbell.store.sqlite_driver import (
    BUSY_TIMEOUT,
    InlineConnection,
    as_sqlalchemy_errors,
    creator,
)
from loadbell.store.tables import metadata

READONLY = "loadbell_readonly"


def json_dumps(value: Any) -> str:
    """JSON text as loadbell's JSON columns store it."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# Seconds a request waits for a pooled connection before it gets a 503 (``unavailable``
# maps SQLAlchemy's pool TimeoutError). SQLAlchemy's default is 30 s, as long as a client's
# whole patience: under overload the client would time out first, and the server would
# still do the work. A request holds a connection for milliseconds, so none coming free in
# 2 s means the process is past what it can take: an answer now serves the client better.
# Admission refuses before this on SQLite (the pool has room for every admitted request).
POOL_TIMEOUT = 2.0


def create_engine(settings: Settings, *, checkpoints: bool = True, **kwargs: Any) -> AsyncEngine:
    """The engine for ``settings``. ``checkpoints=False``: no checkpoint thread on a SQLite
    file (a ``loadbell worker`` leaves them to ``serve``, which writes far more)."""
    kwargs.setdefault("pool_timeout", POOL_TIMEOUT)
    # orjson for JSON columns: every claim reads its events' contexts, every event writes one.
    kwargs.setdefault("json_serializer", json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if settings.is_sqlite:
        return _sqlite_engine(settings, checkpoints=checkpoints, **kwargs)
    size, overflow = pool_sizes(settings)
    kwargs.setdefault("pool_size", size)
    kwargs.setdefault("max_overflow", overflow)
    url = make_url(settings.database_url)
    engine = create_async_engine(url, async_creator=_postgres_creator(url), **kwargs)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine.sync_engine.pool, "checkout", _ping)
    return engine


def _ping(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A connection the server dropped (a restart, an idle timeout) is replaced when it is
    checked out, instead of failing the request that gets it: the pool tries another when
    this raises DisconnectionError. SQLAlchemy's own pre-ping wraps its ``;`` in BEGIN and
    ROLLBACK (for PgBouncer's transaction mode, which loadbell does not support:
    configuration.md), three round trips on every checkout; this is one, a simple query."""
    try:
        dbapi_connection.run_async(lambda conn: conn.execute("SELECT 1"))
    except Exception as exc:  # whatever the driver raised, the connection is not usable
        raise sa_exc.DisconnectionError(f"{exc.__class__.__name__}: {exc}") from exc


class DatabaseUnavailable(Exception):
    """The database could not be reached (refused, timed out, starting or stopping)."""


# Seconds to open a connection: an unreachable server must give a quick 503, not a hang.
CONNECT_TIMEOUT = 5.0


def _postgres_creator(url: Any) -> Any:
    """asyncpg.connect with the dialect's own arguments, a timeout, and connect failures
    raised as :class:`DatabaseUnavailable` (asyncpg raises the socket's own errors, which
    SQLAlchemy passes through unwrapped)."""
    import asyncpg

    args, params = url.get_dialect()().create_connect_args(url)
    # The dialect's own options (its statement cache) are not asyncpg.connect's.
    for option in ("prepared_statement_cache_size", "prepared_statement_name_func"):
        params.pop(option, None)
    params.setdefault("timeout", CONNECT_TIMEOUT)
    failures = (
        OSError,
        TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
    )

    async def connect() -> Any:
        try:
            return await asyncpg.connect(*args, **params)
        except failures as exc:
            raise DatabaseUnavailable(f"{exc.__class__.__name__}: {exc}") from exc

    return connect


# The exception types a database failure comes as (``unavailable`` says which are outages).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    DatabaseUnavailable,
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
)


def unavailable(exc: BaseException) -> bool:
    """The error means the database cannot be reached or used right now (down, restarting,
    locked, out of connections): a passing condition, answered with 503 and Retry-After."""
    if isinstance(exc, DatabaseUnavailable | sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    return isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated


# PostgreSQL: the API's pool (``pool_sizes``), of which ``fill_pool`` opens some at start.
POSTGRES_POOL = 20
POSTGRES_OPENED_AT_START = 10

# Connections used beside the requests admission counts (see ``pool_sizes``).
_UNCOUNTED = 8


def pool_sizes(settings: Settings) -> tuple[int, int]:
    """(pool_size, max_overflow) of the engine for ``settings``.

    PostgreSQL: 20, none of them overflow; a server connection is a process, and requests
    wait their turn for one (at most POOL_TIMEOUT). SQLAlchemy closes an overflow connection
    as soon as it is given back, so with 10 + 10 every burst past 10 requests opened server
    processes anew, each as slow at first as at start-up (``fill_pool``): 20-55 of them in
    a 16-second phase at 200 requests/s, and p99 37-492 ms (D73). The pool keeps what it
    opened, up to 20, as many as 10 + 10 allowed at once.

    SQLite: room for every request admission lets in, and for what it does not count
    (/healthz, /metrics, the due-backlog count, pruning), so no request waits for the pool.
    SQLAlchemy hands a connection back to the pool in a task of its own, a turn of the event
    loop after the ``async with`` ends; under load many are "closing" at once. With the
    default pool (5 + 10 overflow) each one past that opened and closed a SQLite connection
    and its thread per request.
    """
    if not settings.is_sqlite:
        return POSTGRES_POOL, 0
    return 32, max(32, settings.max_in_flight + _UNCOUNTED - 32)


async def fill_pool(engine: AsyncEngine) -> int:
    """Open :data:`POSTGRES_OPENED_AT_START` of the pool's connections now, each with the
    server's caches of loadbell's tables filled, before the first request needs one
    (PostgreSQL; ``serve`` calls it at start); returns how many it opened.

    A connection is a server process, and its first statements pay for the process, the
    driver's set-up and the server's cold catalog caches (each table and index a statement
    touches is looked up once per process). Left to requests, the first second of a
    ``serve`` started under 200 requests/s was slower: median answers over its first half
    second of 165 ms with the connections opened and each table touched by one statement
    that reads no row, against 242 ms (D73). A connection that cannot be opened now is the
    requests' concern (a 503), not the start's."""
    if not is_postgres(engine):
        return 0  # a SQLite connection costs microseconds
    touch = sa.text(
        "SELECT "
        + ", ".join(f'(SELECT 1 FROM "{t.name}" WHERE false)' for t in metadata.sorted_tables)
    )

    async def opened(held: contextlib.AsyncExitStack) -> None:
        conn = await held.enter_async_context(engine.connect())
        await conn.execute(touch)

    async with contextlib.AsyncExitStack() as held:
        # All held at once: a connection given back would be handed out again.
        done = await asyncio.gather(
            *(opened(held) for _ in range(POSTGRES_OPENED_AT_START)), return_exceptions=True
        )
    return sum(1 for c in done if not isinstance(c, BaseException))


def _sqlite_engine(settings: Settings, *, checkpoints: bool, **kwargs: Any) -> AsyncEngine:
    url = make_url(settings.database_url)
    cargs, _ = url.get_dialect()().create_connect_args(url)
    size, overflow = pool_sizes(settings)
    kwargs.setdefault("pool_size", size)
    kwargs.setdefault("max_overflow", overflow)
    # The connection returned last is taken first. Each connection keeps its own page
    # cache, and SQLite drops it whole when another connection wrote since its last
    # transaction: taken in turn (the default), every run update found its connection's
    # cache stale and read its pages again, 178 KB of reads per update (D64). Taken last in,
    # first out, the same few connections serve one write after another and keep their
    # caches (docs/benchmarks.md, "The API path").
    kwargs.setdefault("pool_use_lifo", True)
    # aiosqlite, with statements run on the event loop's thread (sqlite_driver.py).
    engine = create_async_engine(
        url, async_creator=creator(cargs[0], busy_timeout=BUSY_TIMEOUT), **kwargs
    )
    synchronous = settings.sqlite_synchronous

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for pragma in sqlite_pragmas(synchronous):
            cur.execute(pragma)
        cur.close()

    if checkpoints and cargs and cargs[0] not in ("", ":memory:"):
        # Both on threads of their own: the log's checkpoints, and the planner's statistics
        # (optimize.py). A ``loadbell worker`` beside ``serve`` leaves them to it.
        checkpointer = Checkpointer(cargs[0]).start()
        optimizer = Optimizer(cargs[0]).start()

        @event.listens_for(engine.sync_engine, "engine_disposed")
        def _on_dispose(_engine: Any) -> None:
            checkpointer.stop()
            optimizer.stop()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front. A DEFERRED transaction that later writes
        # can fail with "database is locked" without waiting, when two writers race. The
        # driver waits for a taken lock without blocking the loop (sqlite_driver.py).
        # Readers (see ``reader``) use a plain BEGIN: in WAL mode they never block writers.
        readonly = conn.get_execution_options().get(READONLY)
        adapted = conn.connection.dbapi_connection
        driver = conn.connection.driver_connection
        if (
            isinstance(adapted, AdaptedConnection)
            and isinstance(driver, InlineConnection)
            and driver.raw is not None
        ):
            # Straight to the driver: as a statement through SQLAlchemy, BEGIN cost about
            # as much CPU as the run update's INSERTs (docs/benchmarks.md, "The API path").
            # run_async is SQLAlchemy's public way to await the driver from an event.
            if driver.raw.in_transaction:
                return  # begun on the driver by ``transaction``: this statement joins it
            with as_sqlalchemy_errors("BEGIN"):
                if readonly:
                    driver.for_statement().execute("BEGIN")
                else:
                    adapted.run_async(lambda _: driver.begin_write())
        elif readonly:
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# Bytes of heap all SQLite connections of the process may hold together, mostly page
# caches. Each connection caches up to 2 MiB of pages (SQLite's default cache_size), and the
# pool keeps up to 32 connections open and opens 32 more under load: the caches filled as
# the database grew, and RSS crept up with them for as long as the process ran (up to
# 128 MiB). Past this limit SQLite reuses cached pages instead of allocating more; a page
# it dropped is read again from the operating system's cache. A soft limit: SQLite may go
# past it for memory it cannot give back (prepared statements, a large sort).
SQLITE_HEAP_LIMIT = 32 * 1024 * 1024


def sqlite_pragmas(synchronous: str) -> list[str]:
    """What every loadbell connection to a SQLite file sets (the engine's and the worker's)."""
    return [
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={synchronous}",
        "PRAGMA foreign_keys=ON",
        "PRAGMA wal_autocheckpoint=0",  # the checkpointer's job (checkpoint.py)
        # For the whole process, not the connection: set again by each, to the same value.
        f"PRAGMA soft_heap_limit={SQLITE_HEAP_LIMIT}",
    ]


@contextlib.asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """``engine.begin()``, cheaper on SQLite: for the API's hot writes (``PATCH /runs/{id}``).

    On SQLite's inline driver (``sqlite_driver.py``) the transaction is begun and committed
    on the ``sqlite3`` connection itself: ``BEGIN IMMEDIATE`` (waiting for the write lock
    without blocking the loop), the caller's statements, ``COMMIT``. Through SQLAlchemy
    (``conn.begin()`` and its commit, each a greenlet of its own, events and bookkeeping)
    the same transaction cost about 50 µs of CPU more (docs/benchmarks.md, "The API path").
    A SQLAlchemy statement inside still works: its automatic begin finds the ``sqlite3``
    transaction open and joins it (``_on_begin``), and the ``COMMIT`` here commits it too;
    SQLAlchemy's record of that transaction ends when the connection is closed (its
    rollback then finds nothing to undo). Errors come out as SQLAlchemy's (``database is
    locked`` is still a 503). The connection goes back to the pool inline, not in a task
    of its own a loop turn later as ``engine.begin()``'s does: the close waits for no I/O
    on SQLite, so nothing can interrupt it. Elsewhere this is ``engine.begin()``.
    """
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    conn = await engine.connect()
    try:
        driver = conn.sync_connection.connection.driver_connection if conn.sync_connection else None
        if not isinstance(driver, InlineConnection) or driver.raw is None:
            async with conn.begin():
                yield conn
            return
        raw = driver.raw
        with as_sqlalchemy_errors("BEGIN IMMEDIATE"):
            await driver.begin_write()
        try:
            yield conn
        except BaseException:
            with as_sqlalchemy_errors("ROLLBACK"):
                raw.rollback()
            raise
        with as_sqlalchemy_errors("COMMIT"):
            raw.commit()
    finally:
        await conn.close()


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, for read-only work (no write lock on SQLite).

    On PostgreSQL its connections run in autocommit: no ``BEGIN`` before the first
    statement and no ``ROLLBACK`` when the connection goes back to the pool, two round trips
    to a server on the same cores, for nothing: at READ COMMITTED, the server's default and
    loadbell's, each statement reads a snapshot of its own inside a transaction too
    (docs/decisions.md, D57)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(**{READONLY: True}, isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{READONLY: True})


# Connections of the off-loop reader (SQLite): each one is a thread, and the reads it serves
# are few at a time (delivery-log pages, lists).
SLOW_READER_POOL = 4
# Milliseconds an off-loop read waits for a lock (WAL recovery): on its own thread, so it
# may wait longer than the loop's readers do.
SLOW_READER_BUSY_MS = 5000


def slow_reader(settings: Settings, engine: AsyncEngine) -> AsyncEngine:
    """The engine for reads that may be slow (the delivery log, lists): never on the event
    loop's thread.

    On SQLite the engine's statements run inline on the loop (sqlite_driver.py), which is
    right for loadbell's short indexed statements and wrong for a read that may scan:
    everything else in the process waits for it. This engine's connections are plain
    aiosqlite connections, each with a thread of its own, read-only, in WAL mode beside the
    writers. Each read costs a few thread hops (about 150 µs each) more than inline. On
    PostgreSQL asyncpg waits for the server without holding the loop, so it is ``reader``
    of the same engine.
    """
    if not settings.is_sqlite:
        return reader(engine)
    url = make_url(settings.database_url)
    slow = create_async_engine(
        url.set(drivername="sqlite+aiosqlite"),
        pool_size=SLOW_READER_POOL,
        max_overflow=SLOW_READER_POOL,
        pool_timeout=POOL_TIMEOUT,
        json_serializer=json_dumps,
        json_deserializer=orjson.loads,
    )

    @event.listens_for(slow.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy's recipe for aiosqlite: the driver begins no transaction by itself,
        # the "begin" event below does (so a page's statements share one snapshot).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA query_only=ON")
        cur.execute(f"PRAGMA busy_timeout={SLOW_READER_BUSY_MS}")
        cur.close()

    @event.listens_for(slow.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")

    return slow


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def sqlite_path(database_url: str) -> str:
    """The file behind a sqlite URL."""
    path = make_url(database_url).database
    if not path:
        raise ValueError(f"{database_url} names no SQLite file")
    return path
