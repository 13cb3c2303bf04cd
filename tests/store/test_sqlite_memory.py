"""SQLite's own heap in the process is bounded, however many pooled connections warm their
page caches (store/db.py: SQLITE_HEAP_LIMIT)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from loadbell.settings import Settings
from loadbell.store import db
from loadbell.store.db import create_engine, reader


def _sqlite_library() -> ctypes.CDLL | None:
    """libsqlite3 as the sqlite3 module loaded it (the same library, the same counters)."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_soft_heap_limit64.restype = ctypes.c_int64
    lib.sqlite3_soft_heap_limit64.argtypes = [ctypes.c_int64]
    return lib


@pytest.fixture
def sqlite_lib() -> Iterator[ctypes.CDLL]:
    lib = _sqlite_library()
    if lib is None:
        pytest.skip("libsqlite3 cannot be loaded by name")
    probe = sqlite3.connect(":memory:")
    if lib.sqlite3_memory_used() <= 0:  # a statically linked sqlite3 module: other counters
        probe.close()
        pytest.skip("the sqlite3 module does not use the shared libsqlite3")
    before = lib.sqlite3_soft_heap_limit64(-1)  # -1 reads it
    try:
        yield lib
    finally:
        lib.sqlite3_soft_heap_limit64(before)  # the limit is the process's: put it back
        probe.close()


async def test_every_connection_sets_the_heap_limit(tmp_path: Path) -> None:
    """A pooled connection reports the process-wide soft heap limit loadbell sets."""
    engine = create_engine(Settings(database_url=f"sqlite:///{tmp_path / 'd.db'}"))
    try:
        async with engine.connect() as conn:
            limit = (await conn.exec_driver_sql("PRAGMA soft_heap_limit")).scalar()
        assert limit == db.SQLITE_HEAP_LIMIT
    finally:
        await engine.dispose()


async def test_many_warm_connections_stay_within_the_limit(
    tmp_path: Path, sqlite_lib: ctypes.CDLL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 pooled connections that each read a 12 MiB table would cache 2 MiB of pages each
    (40 MiB); with a 4 MiB limit SQLite's heap stays near 4 MiB."""
    limit = 4 * 1024 * 1024
    monkeypatch.setattr(db, "SQLITE_HEAP_LIMIT", limit)
    path = tmp_path / "big.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x BLOB)")
    raw.executemany("INSERT INTO t (x) VALUES (?)", ((os.urandom(400),) for _ in range(30_000)))
    raw.commit()
    raw.close()

    engine = create_engine(Settings(database_url=f"sqlite:///{path}"), pool_size=20)
    conns = []
    try:
        for _ in range(20):  # all open at once: each one is a connection of its own
            conn = await reader(engine).connect()  # plain BEGIN: readers share the file
            conns.append(conn)
            await conn.execute(sa.text("SELECT sum(length(x)) FROM t"))
        used = sqlite_lib.sqlite3_memory_used()
        # Statements and connections themselves are outside what the limit can take back.
        assert used < limit + 3 * 1024 * 1024, f"SQLite holds {used / 2**20:.1f} MiB"
    finally:
        for conn in conns:
            await conn.close()
        await engine.dispose()


async def test_without_the_limit_the_same_reads_grow_the_heap(
    tmp_path: Path, sqlite_lib: ctypes.CDLL
) -> None:
    """The control of the test above: the same reads without a limit hold far more, so
    that test measures the limit, not a workload too small to matter."""
    sqlite_lib.sqlite3_soft_heap_limit64(0)  # none
    path = tmp_path / "big.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x BLOB)")
    raw.executemany("INSERT INTO t (x) VALUES (?)", ((os.urandom(400),) for _ in range(30_000)))
    raw.commit()
    raw.close()
    before = sqlite_lib.sqlite3_memory_used()
    readers = [sqlite3.connect(path) for _ in range(20)]
    try:
        for reader in readers:
            reader.execute("SELECT sum(length(x)) FROM t").fetchone()
        grown = sqlite_lib.sqlite3_memory_used() - before
        assert grown > 20 * 1024 * 1024
    finally:
        for reader in readers:
            reader.close()
