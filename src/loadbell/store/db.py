"""Engine creation with the per-backend settings that make the outbox safe and fast."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from loadbell.settings import Settings

# A writer waits this long for SQLite's lock before giving up (milliseconds). Several
# processes (serve + worker) may share one file.
SQLITE_BUSY_TIMEOUT_MS = 10_000
READONLY = "loadbell_readonly"


def create_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    if settings.is_sqlite:
        return _sqlite_engine(settings, **kwargs)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return create_async_engine(settings.database_url, pool_pre_ping=False, **kwargs)


def _sqlite_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
    )
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
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front. A DEFERRED transaction that later writes
        # can fail with "database is locked" without waiting, when two writers race.
        # Readers (see ``reader``) use a plain BEGIN: in WAL mode they never block writers.
        if conn.get_execution_options().get(READONLY):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine and pool, for read-only work (no write lock on SQLite)."""
    return engine.execution_options(**{READONLY: True})


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"
