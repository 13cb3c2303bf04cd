"""The fan-out's read of the mutes in force (store/mutes.py): which mutes match an event's
organization, project and load test, the same on SQLite's inline path and through
SQLAlchemy, from one index range."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.store import mutes as store
from loadbell.store.tables import channels, load_tests, mutes, organizations, projects

NOW = datetime.now(UTC)


async def _world(engine: AsyncEngine) -> dict[str, int]:
    """Organization 1 with projects 1 and 2, a load test in each, a channel; organization 2
    with a mute of its own. Returns the ids by name."""
    async with engine.begin() as conn:

        async def add(table: sa.Table, **values: object) -> int:
            q = sa.insert(table).values(**values).returning(table.c.id)
            return int((await conn.execute(q)).scalar_one())

        org2 = await add(organizations, name="other")
        p2 = await add(projects, organization_id=1, name="second")
        lt1 = await add(load_tests, project_id=1, name="a")
        lt2 = await add(load_tests, project_id=p2, name="b")
        ch = await add(channels, organization_id=1, kind="webhook", name="c", config={}, events=[])
        ids = {"org2": org2, "p2": p2, "lt1": lt1, "lt2": lt2, "ch": ch}
        later, earlier = NOW + timedelta(hours=1), NOW - timedelta(seconds=1)
        for name, values in (
            ("org", {}),
            ("project1", {"project_id": 1}),
            ("project2", {"project_id": p2}),
            ("test1", {"project_id": 1, "load_test_id": lt1}),
            ("test2_no_project", {"load_test_id": lt2}),
            ("channel", {"channel_id": ch}),
            ("ended", {"until": earlier}),
            ("other_org", {"organization_id": org2}),
        ):
            row = {"organization_id": 1, "until": later, "reason": name, "created_by": 1}
            ids[name] = await add(mutes, **{**row, **values})
    return ids


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "sqlalchemy"])
async def test_live_mutes_match_every_scope_they_name(
    engine: AsyncEngine, inline: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event gets the organization's mutes in force whose project and load test are
    unset or its own; ended mutes and other organizations' never; events without a
    project or load test only the mutes without one. ``covering`` then picks per channel."""
    if not inline:
        if engine.dialect.name != "sqlite":
            pytest.skip("PostgreSQL has one path: SQLAlchemy's")
        monkeypatch.setattr(store, "sqlite3_of", lambda conn: None)  # as on PostgreSQL
    ids = await _world(engine)
    cases = [
        # (project, load test) of the event -> the mutes that match it
        ((1, ids["lt1"]), ["org", "project1", "test1", "channel"]),
        ((ids["p2"], ids["lt2"]), ["org", "project2", "test2_no_project", "channel"]),
        ((1, None), ["org", "project1", "channel"]),  # a project event (no load test)
        ((None, None), ["org", "channel"]),  # an organization event
    ]
    async with engine.begin() as conn:
        if engine.dialect.name == "sqlite":  # the path this case is about is the one taken
            assert (store.sqlite3_of(conn) is not None) == inline
        for (project, load_test), expected in cases:
            live = await store.live_mutes(conn, 1, project, load_test, NOW)
            assert [m.id for m in live] == [ids[n] for n in expected], (project, load_test)
    channel_only = [m for m in live if m.id == ids["channel"]]
    assert store.covering(live, ids["ch"] + 1) == live[0]  # the organization's mute
    assert store.covering(channel_only, ids["ch"]) == channel_only[0]
    assert store.covering(channel_only, ids["ch"] + 1) is None
    assert store.covering([], ids["ch"]) is None


def test_the_inline_statement_searches_the_active_index(tmp_path: Path) -> None:
    """SQLite answers the fan-out's statement from ix_mutes_active, sorting nothing but
    the few rows of the range (ORDER BY id)."""
    db = sqlite3.connect(tmp_path / "plan.db")
    try:
        for table in (organizations, projects, load_tests, channels, mutes):
            for statement in (
                sa.schema.CreateTable(table),
                *map(sa.schema.CreateIndex, table.indexes),
            ):
                db.execute(str(statement.compile(dialect=sa.dialects.sqlite.dialect())))
        steps = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + store._LIVE_SQL, (1, "x", 1, 1))]
    finally:
        db.close()
    assert steps[0].startswith("SEARCH mutes USING INDEX ix_mutes_active"), steps
