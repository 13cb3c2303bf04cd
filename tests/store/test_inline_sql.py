"""The run update's statements on SQLite's own connection (store/inline_sql.py) do what
SQLAlchemy's do on PostgreSQL."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from bench.backlog import create_load_test, create_runs, create_webhook_channel
from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.domain.events import EventType
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store import channels, context, inline_sql, tables
from loadbell.store.db import transaction, unavailable
from loadbell.store.outbox import stage_event
from loadbell.store.sqlite_driver import as_sqlalchemy_errors

URL = "http://127.0.0.1:9/"  # never contacted


def _row(
    event_id: int, channel_id: int, key: str, status: str = "pending", run_id: int | None = None
) -> dict[str, object]:
    return {
        "uuid": str(uuid.uuid4()),
        "event_id": event_id,
        "channel_id": channel_id,
        "target": None,
        "order_key": key,
        "status": status,
        "reason": None,
        "series": 1,
        "attempts": 0,
        "next_attempt_at": 1.5,
        "lease_until": None,
        "lease_owner": None,
        "organization_id": 1,
        "event_type": "test.started",
        "run_id": run_id,
    }


async def test_inline_statements_write_and_read_as_sqlalchemy_does(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Status history, delivery rows (ids in order) and pending order keys, in the caller's
    transaction; on SQLite through the sqlite3 connection, elsewhere through SQLAlchemy."""
    box = SecretBox(settings.secret_key)
    async with transaction(engine) as conn:
        channel_id = await create_webhook_channel(conn, box, URL, ["test.started"])
        (run_id,) = await create_runs(conn, await create_load_test(conn), 1)
        event_id, _ = await stage_event(
            conn,
            event_type=EventType.TEST_STARTED,
            organization_id=1,
            context={},
            plan=[],
            run_id=run_id,
        )
    odd = f"{channel_id}:{run_id}:#général \"quoted\" 'x'"  # a target may hold anything
    async with transaction(engine) as conn:
        assert (inline_sql.sqlite3_of(conn) is not None) == settings.is_sqlite
        await inline_sql.add_status_change(conn, run_id, 2)
        ids = await inline_sql.insert_deliveries(
            conn,
            [
                _row(event_id, channel_id, "a", run_id=run_id),
                _row(event_id, channel_id, odd),
                _row(event_id, channel_id, "done", status="succeeded"),
            ],
        )
        assert ids == sorted(ids) and len(set(ids)) == 3
        waiting = await inline_sql.pending_order_keys(conn, ["a", odd, "done", "none"])
        assert waiting == {"a", odd}
        assert await inline_sql.pending_order_keys(conn, ["b"]) == set()

    async with engine.connect() as conn:
        history = (
            await conn.execute(
                sa.select(tables.run_status_changes.c.status, tables.run_status_changes.c.at)
                .where(tables.run_status_changes.c.run_id == run_id)
                .order_by(tables.run_status_changes.c.id)
            )
        ).all()
        rows = (
            await conn.execute(sa.select(tables.deliveries).where(tables.deliveries.c.id.in_(ids)))
        ).all()
    assert [h.status for h in history] == [-2, 2]  # Created (create_runs), then Running
    assert all(h.at is not None for h in history)
    by_id = {r.id: r for r in rows}
    assert [by_id[i].order_key for i in ids] == ["a", odd, "done"]
    assert by_id[ids[0]].next_attempt_at == 1.5 and by_id[ids[0]].created_at is not None
    # The delivery log's columns, copied from the event (migration 0007), are written too.
    first = by_id[ids[0]]
    assert (first.organization_id, first.event_type, first.run_id) == (1, "test.started", run_id)


async def test_a_failed_transaction_leaves_no_inline_rows(engine: AsyncEngine) -> None:
    """The inline statements belong to the caller's transaction: a rollback removes them."""
    async with transaction(engine) as conn:
        (run_id,) = await create_runs(conn, await create_load_test(conn), 1)
    with pytest.raises(RuntimeError):
        async with transaction(engine) as conn:
            await inline_sql.add_status_change(conn, run_id, 2)
            raise RuntimeError("the handler failed")
    async with engine.connect() as conn:
        count = (
            await conn.execute(
                sa.select(sa.func.count()).where(tables.run_status_changes.c.run_id == run_id)
            )
        ).scalar()
    assert count == 1  # Created only


async def test_run_and_channel_reads_match_sqlalchemys_on_sqlite(
    engine: AsyncEngine, settings: Settings
) -> None:
    """On SQLite the inline reads of a run (with its names) and of the live channels with
    their overrides give what SQLAlchemy's statements give; elsewhere there is no inline
    connection."""
    box = SecretBox(settings.secret_key)
    async with transaction(engine) as conn:
        org_wide = await create_webhook_channel(conn, box, URL, ["test.started"])
        overridden = await create_webhook_channel(conn, box, URL, ["test.finished"])
        gone = await create_webhook_channel(conn, box, URL, ["test.started"])
        await conn.execute(
            sa.update(tables.channels)
            .where(tables.channels.c.id == gone)
            .values(deleted_at=datetime.now(UTC))
        )
        await conn.execute(
            sa.update(tables.channels)
            .where(tables.channels.c.id == org_wide)
            .values(
                enabled=False,
                disabled_reason="disabled after 20 consecutive failed deliveries",
                filters={"trigger": ["ci"]},
                retry={"max_attempts": 3},
            )
        )
        await conn.execute(
            sa.insert(tables.channel_overrides).values(
                channel_id=overridden,
                project_id=1,
                enabled=True,
                config={"format": "loadmance"},
                secrets=box.seal({"url": "http://127.0.0.1:9/project"}),
            )
        )
        (run_id,) = await create_runs(conn, await create_load_test(conn), 1)
        await inline_sql.update_run(
            conn,
            run_id,
            {
                "status": 5,
                "started_at": datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
                "ended_at": datetime(2026, 1, 2, 4, 4, 5, tzinfo=UTC),
                "result": "passed",
                "metrics": {"p95": 12.5, "é": [1, 2]},
                "updated_at": datetime.now(UTC),
            },
        )

    async with engine.connect() as conn:
        raw = inline_sql.sqlite3_of(conn)
        if not settings.is_sqlite:
            assert raw is None
            return
        assert raw is not None
        expected_run = dict(
            (await conn.execute(context._RUN_WITH_NAMES, {"b_run_id": run_id})).one()._mapping
        )
        got_run = inline_sql.read_run_with_names(raw, run_id)
        assert got_run is not None
        assert {k: (type(v), v) for k, v in got_run.items()} == {
            k: (type(v), v) for k, v in expected_run.items()
        }
        # Stored as SQLAlchemy stores them: naive UTC text, always with microseconds.
        assert raw.execute(
            "SELECT started_at, ended_at FROM runs WHERE id = ?", (run_id,)
        ).fetchall() == [("2026-01-02 03:04:05.000678", "2026-01-02 04:04:05.000000")]
        assert expected_run["metrics"] == {"p95": 12.5, "é": [1, 2]}
        assert expected_run["started_at"] == datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
        assert inline_sql.read_run_with_names(raw, run_id + 1000) is None
        for project_id in (1, None):
            statement = (
                channels._ORG_WIDE_AND_PROJECT_WITH_OVERRIDES
                if project_id is not None
                else channels._ORG_WIDE
            )
            params = {"b_org": 1, "b_project": project_id}
            rows = (await conn.execute(statement, params)).all()
            got = inline_sql.read_live_channels(raw, 1, project_id)
            assert [c["id"] for c, _ in got] == [r.id for r in rows] == [org_wide, overridden]
            for (channel, override), row in zip(got, rows, strict=True):
                m = row._mapping
                assert {k: (type(channel[k]), channel[k]) for k in inline_sql.CHANNEL_FIELDS} == {
                    k: (type(m[k]), m[k]) for k in inline_sql.CHANNEL_FIELDS
                }
                # What the fan-out builds from either read is the same, every field of it
                # (a channel disabled for failing too).
                assert channels.channel_from_row(channel, box) == channels.channel_from_row(m, box)
                if project_id is None or m["ov_id"] is None:
                    assert override is None
                else:
                    assert override is not None
                    assert type(override["enabled"]) is type(m["ov_enabled"])
                    assert override == {
                        "enabled": m["ov_enabled"],
                        "config": m["ov_config"],
                        "secrets": m["ov_secrets"],
                    }
            assert (got[1][1] is not None) == (project_id is not None)


async def test_errors_come_as_sqlalchemys_on_both_databases(engine: AsyncEngine) -> None:
    """A failed inline statement raises what SQLAlchemy raises (here a foreign key the row
    breaks), so the API answers it as before."""
    with pytest.raises(sa.exc.IntegrityError):
        async with transaction(engine) as conn:
            await inline_sql.insert_deliveries(conn, [_row(10**6, 10**6, "k")])


def test_a_locked_database_is_an_operational_error_the_api_answers_with_503() -> None:
    """sqlite3's "database is locked" comes out as SQLAlchemy's OperationalError, which
    store/db.py counts as unavailable (503 with Retry-After)."""
    with pytest.raises(sa.exc.OperationalError) as caught:
        with as_sqlalchemy_errors("BEGIN"):
            raise sqlite3.OperationalError("database is locked")
    assert unavailable(caught.value)
    assert isinstance(caught.value.orig, sqlite3.OperationalError)
