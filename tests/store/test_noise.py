"""Noise control's statements read their indexes: the worker's release of held deliveries
and notify_on's previous runs (SQLite's plans), and migration 0013 goes both ways."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from loadbell.settings import Settings
from loadbell.store import migrate
from loadbell.store.db import create_engine
from loadbell.store.queue.sqlite import RELEASE
from loadbell.store.tables import runs


def _migrated(path: Path, revision: str = "head") -> None:
    async def make() -> None:
        eng = create_engine(Settings(database_url=f"sqlite:///{path}"), checkpoints=False)
        try:
            await migrate.upgrade(eng, revision)
        finally:
            await eng.dispose()

    asyncio.run(make())


def _plan(db: sqlite3.Connection, sql: str, params: dict[str, object] | None = None) -> str:
    return " | ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params or {}))


def test_release_and_previous_runs_search_their_indexes(tmp_path: Path) -> None:
    """The release step searches ix_deliveries_held, the previous runs ix_runs_ended
    without a sort: neither reads the table's other rows."""
    path = tmp_path / "plans.db"
    _migrated(path)
    previous = (
        sa.select(runs.c.result)
        .where(runs.c.load_test_id == 7, runs.c.ended_at.is_not(None), runs.c.id != 70)
        .order_by(runs.c.ended_at.desc(), runs.c.id.desc())
        .limit(100)
    )
    sql = str(
        previous.compile(dialect=sqlite_dialect.dialect(), compile_kwargs={"literal_binds": True})
    )
    db = sqlite3.connect(path)
    try:
        release = _plan(db, RELEASE, {"due": 1.0, "at": "x", "now": 2.0})
        assert "USING INDEX ix_deliveries_held" in release, release
        runs_plan = _plan(db, sql)
        assert "USING INDEX ix_runs_ended" in runs_plan, runs_plan
        assert "TEMP B-TREE" not in runs_plan, runs_plan
    finally:
        db.close()


def test_migration_0013_goes_both_ways(tmp_path: Path) -> None:
    """0013 adds the two indexes, its downgrade removes them, and upgrading again works."""
    path = tmp_path / "m.db"

    def indexes() -> set[str]:
        db = sqlite3.connect(path)
        try:
            return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        finally:
            db.close()

    _migrated(path, "0012")
    assert not {"ix_deliveries_held", "ix_runs_ended"} & indexes()
    _migrated(path)
    assert {"ix_deliveries_held", "ix_runs_ended"} <= indexes()

    async def down() -> None:
        eng = create_engine(Settings(database_url=f"sqlite:///{path}"), checkpoints=False)
        try:
            await migrate.downgrade(eng, "0012")
        finally:
            await eng.dispose()

    asyncio.run(down())
    assert not {"ix_deliveries_held", "ix_runs_ended"} & indexes()
    _migrated(path)
    assert {"ix_deliveries_held", "ix_runs_ended"} <= indexes()
