"""The one-hop aiosqlite cursor behaves like a DBAPI cursor for everything loadbell runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from loadbell.settings import Settings
from loadbell.store.db import create_engine


async def test_rows_counts_and_errors(tmp_path: Path) -> None:
    """RETURNING rows, rowcount, lastrowid, executemany, fetchmany and errors all come
    through a single thread call per statement."""
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
