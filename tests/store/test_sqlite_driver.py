"""SQLite on the event loop (store/sqlite_driver.py): a DBAPI cursor without thread hops,
and writers that wait for the lock without blocking the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from loadbell.settings import Settings
from loadbell.store.db import create_engine, reader, transaction
from loadbell.store.inline_sql import sqlite3_of
from loadbell.store.sqlite_driver import READ_BUSY_TIMEOUT_MS, begin_immediate, creator


async def test_rows_counts_and_errors(tmp_path: Path) -> None:
    """RETURNING rows, rowcount, lastrowid, executemany, fetchmany and errors all come
    through, with no thread hop."""
    engine = create_engine(Settings(database_url=f"sqlite:///{tmp_path / 'd.db'}"))
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
            inserted = await conn.exec_driver_sql("INSERT INTO t (v) VALUES ('a')")
            assert inserted.lastrowid == 1
            await conn.execute(
                sa.text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}, {"v": "d"}]
            )
            returned = await conn.exec_driver_sql(
                "UPDATE t SET v = v || '!' WHERE id > 2 RETURNING id"
            )
            assert sorted(r[0] for r in returned) == [3, 4]
            updated = await conn.exec_driver_sql("UPDATE t SET v = v || '?' WHERE id < 3")
            assert updated.rowcount == 2
            result = await conn.exec_driver_sql("SELECT v FROM t ORDER BY id")
            assert result.fetchmany(2) == [("a?",), ("b?",)]
            assert result.fetchall() == [("c!",), ("d!",)]
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.exec_driver_sql("INSERT INTO t (v) VALUES ('a?')")
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 4
    finally:
        await engine.dispose()


async def test_a_writer_waits_for_the_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    """While another connection holds the write lock, a write transaction waits for it
    asynchronously (the event loop keeps running) and goes ahead once it is free."""
    path = tmp_path / "d.db"
    engine = create_engine(Settings(database_url=f"sqlite:///{path}"))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (v TEXT)")
        other.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())

        async def write() -> None:
            async with engine.begin() as conn:
                await conn.exec_driver_sql("INSERT INTO t VALUES ('waited')")

        writing = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        assert not writing.done(), "the lock is still taken"
        assert ticks >= 5, "the loop kept running while the writer waited"
        other.execute("COMMIT")
        await asyncio.wait_for(writing, timeout=10)
        ticker.cancel()
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT v FROM t")).scalar() == "waited"
    finally:
        other.close()
        await engine.dispose()


async def test_a_lock_held_too_long_is_an_error_that_says_so(tmp_path: Path) -> None:
    """begin_immediate gives up after its timeout with "database is locked"."""
    path = tmp_path / "d.db"
    holder = sqlite3.connect(path, isolation_level=None)
    waiter = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("PRAGMA journal_mode=WAL")
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            await begin_immediate(waiter, timeout=0.2)
        assert time.monotonic() - started >= 0.2
        holder.execute("COMMIT")
        await begin_immediate(waiter, timeout=0.2)
        assert waiter.in_transaction
    finally:
        holder.close()
        waiter.close()


def test_connections_never_hold_the_interpreter_open(tmp_path: Path) -> None:
    """A connection nobody closed does not keep the process from exiting (its aiosqlite
    thread is a daemon)."""
    script = (
        "import asyncio\n"
        "from loadbell.settings import Settings\n"
        "from loadbell.store.db import create_engine\n"
        "async def main():\n"
        f"    engine = create_engine(Settings(database_url='sqlite:///{tmp_path}/d.db'))\n"
        "    conn = await engine.connect()\n"
        "    await conn.exec_driver_sql('SELECT 1')\n"
        "    print('leaving a connection open')\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "leaving a connection open" in done.stdout


async def test_writes_leave_the_busy_timeout_off_and_reads_get_it_back(tmp_path: Path) -> None:
    """A write transaction on a connection whose last one wrote sends no PRAGMA; the busy
    timeout is 0 inside write transactions and the readers' 50 ms for what runs outside
    them (D71)."""
    engine = create_engine(Settings(database_url=f"sqlite:///{tmp_path / 'd.db'}"))
    sent: list[str] = []
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (v TEXT)")
        for n in range(3):
            async with transaction(engine) as conn:
                raw = sqlite3_of(conn)
                assert raw is not None
                if n == 0:
                    raw.set_trace_callback(sent.append)
                raw.execute("INSERT INTO t VALUES ('x')")
                assert raw.execute("PRAGMA busy_timeout").fetchone() == (0,)
        raw.set_trace_callback(None)
        assert [s for s in sent if "busy_timeout" in s and "=" in s] == []
        assert sent.count("BEGIN IMMEDIATE") == 2  # the next two transactions
        # The pool hands out the same connection (the one returned last).
        async with reader(engine).connect() as conn:
            got = await conn.exec_driver_sql("PRAGMA busy_timeout")
            assert got.scalar() == READ_BUSY_TIMEOUT_MS  # a read: the readers' timeout
        async with engine.begin() as conn:  # SQLAlchemy's own begin: a write again
            got = await conn.exec_driver_sql("PRAGMA busy_timeout")
            assert got.scalar() == 0
        async with engine.connect() as conn:
            raw = sqlite3_of(conn)  # a statement on the driver, outside a transaction
            assert raw is not None
            assert raw.execute("PRAGMA busy_timeout").fetchone() == (READ_BUSY_TIMEOUT_MS,)
    finally:
        await engine.dispose()


async def test_the_busy_timeout_stays_off_only_in_wal_mode(tmp_path: Path) -> None:
    """In WAL mode a write transaction keeps the busy timeout at 0; with a rollback journal
    (WAL could not be set) COMMIT may wait for readers, so the readers' timeout is back
    inside the transaction, as before D71."""
    for mode, inside in (("wal", 0), ("delete", READ_BUSY_TIMEOUT_MS)):
        conn = await creator(str(tmp_path / f"{mode}.db"))()
        try:
            raw = conn.raw
            assert raw is not None
            raw.execute(f"PRAGMA journal_mode={mode}")
            for _ in range(2):
                await conn.begin_write()
                assert raw.execute("PRAGMA busy_timeout").fetchone() == (inside,), mode
                raw.execute("COMMIT")
        finally:
            await conn.close()


def test_none_binds_as_null_through_the_registered_adapter() -> None:
    """Importing the driver registers an adapter for None (a C-level lookup, found before
    sqlite3's search for ``__adapt__``, bench/worker_instructions.py measures what it
    saves): None still binds as NULL, one parameter or many, beside values of every other
    type, and other values bind as they did."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (a, b)")
        conn.execute("INSERT INTO t VALUES (?, ?)", (None, 1))
        conn.executemany(
            "INSERT INTO t VALUES (?, ?)",
            [(None, None), ("x", None), (2.5, b"y"), (True, None)],
        )
        rows = conn.execute("SELECT a, typeof(a), b, typeof(b) FROM t ORDER BY rowid").fetchall()
    finally:
        conn.close()
    assert rows == [
        (None, "null", 1, "integer"),
        (None, "null", None, "null"),
        ("x", "text", None, "null"),
        (2.5, "real", b"y", "blob"),
        (1, "integer", None, "null"),
    ]
