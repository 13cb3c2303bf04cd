"""The worker's hot statements as SQL text (store/driver_sql.py), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from conftest import seed
from loadbell.settings import Settings
from loadbell.store.db import create_engine, transaction
from loadbell.store.driver_sql import POSTGRESQL, SQLITE, Statements
from loadbell.store.tables import events

_INSERT = """
INSERT INTO events (type, occurred_at, organization_id, project_id, context)
VALUES (?, ?, ?, ?, ?)
"""
_SELECT = "SELECT id, occurred_at, context FROM events WHERE id {in_ints} ORDER BY id"


def test_sql_text_per_dialect() -> None:
    template = "SELECT 1 FROM t WHERE a = ? AND b {in_ints} AND c {in_texts} AND d < ?"
    assert SQLITE.sql(template) == (
        "SELECT 1 FROM t WHERE a = ? AND b IN (SELECT value FROM json_each(?)) "
        "AND c IN (SELECT value FROM json_each(?)) AND d < ?"
    )
    assert POSTGRESQL.sql(template) == (
        "SELECT 1 FROM t WHERE a = $1 AND b = ANY($2::integer[]) AND c = ANY($3::text[]) AND d < $4"
    )
    assert SQLITE.members([3, 1]) == "[3,1]"
    assert POSTGRESQL.members((3, 1)) == [3, 1]


async def test_values_round_trip_through_sqlalchemy(settings: Settings) -> None:
    """What the driver statements write, SQLAlchemy's column types read back unchanged, and
    the other way round; list parameters of any length match the right rows."""
    await seed(settings)
    engine = create_engine(settings)
    when = datetime(2026, 12, 2, 11, 30, 15, 123456, tzinfo=UTC)
    context = {"run": {"id": 7, "status": 2, "name": "ünïcode"}, "list": [1, None]}
    try:
        async with transaction(engine) as conn:
            run = await Statements.on(conn)
            d = run.dialect
            rows = [
                ("test.started", d.timestamp(when), 1, None, d.json(context)),
                # another zone: stored as UTC
                (
                    "test.finished",
                    d.timestamp(when.astimezone(timezone(timedelta(hours=2)))),
                    1,
                    3,
                    "{}",
                ),
            ]
            await run.run_many(_INSERT, rows)
        async with engine.connect() as conn:
            read = (await conn.execute(sa.select(events).order_by(events.c.id))).all()
        assert [(r.type, r.occurred_at, r.project_id) for r in read] == [
            ("test.started", when, None),
            ("test.finished", when, 3),
        ]
        assert read[0].context == context
        ids = [r.id for r in read]
        async with transaction(engine) as conn:
            run = await Statements.on(conn)
            d = run.dialect
            assert await run.fetch(_SELECT, (d.members([]),)) == []
            one = await run.fetch(_SELECT, (d.members(ids[1:]),))
            assert [r[0] for r in one] == ids[1:]
            both = await run.fetch(_SELECT, (d.members(ids),))
            assert [d.read_timestamp(r[1]) for r in both] == [when, when]
            assert d.read_json(both[0][2]) == context
    finally:
        await engine.dispose()


@pytest.mark.parametrize("many", [False, True])
async def test_errors_are_sqlalchemy_errors(settings: Settings, many: bool) -> None:
    """The worker retries on SQLAlchemyError; statements run on the sqlite3 connection
    itself raise the same errors as SQLAlchemy would, and nothing is half written."""
    await seed(settings)
    engine = create_engine(settings)
    try:
        with pytest.raises(IntegrityError) as caught:
            async with transaction(engine) as conn:
                run = await Statements.on(conn)
                now = run.dialect.timestamp(datetime.now(UTC))
                good = ("test.started", now, 1, None, "{}")
                bad = ("test.started", now, 999, None, "{}")  # there is no organization 999
                if many:
                    await run.run_many(_INSERT, [good, bad])
                else:
                    await run.run_many(_INSERT, [good])
                    await run.execute(_INSERT, bad)
        assert isinstance(caught.value, SQLAlchemyError)
        async with engine.connect() as conn:
            assert (
                await conn.execute(sa.select(sa.func.count()).select_from(events))
            ).scalar() == 0
    finally:
        await engine.dispose()
