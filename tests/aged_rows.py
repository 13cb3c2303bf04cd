"""Rows with back-dated timestamps, written straight into the tables, for retention tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loadbell.store.tables import (
    DELIVERY_PENDING,
    channels,
    deliveries,
    delivery_attempts,
    events,
    load_tests,
    run_reports,
    runs,
)

FINAL_METRICS = {"http_reqs": {"count": 1200}, "http_req_duration": {"p(95)": 180.5}}


def ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


async def make_run(conn: AsyncConnection) -> int:
    """A finished run of project 1 with final figures (the seeded organization's)."""
    load_test = (
        await conn.execute(
            sa.insert(load_tests).values(project_id=1, name="aged").returning(load_tests.c.id)
        )
    ).scalar_one()
    return int(
        (
            await conn.execute(
                sa.insert(runs)
                .values(
                    load_test_id=load_test,
                    project_id=1,
                    organization_id=1,
                    status=3,
                    result="passed",
                    trigger="api",
                    user_id=1,
                    metrics=FINAL_METRICS,
                    created_at=ago(60),
                    updated_at=ago(60),
                )
                .returning(runs.c.id)
            )
        ).scalar_one()
    )


async def make_channel(conn: AsyncConnection) -> int:
    return int(
        (
            await conn.execute(
                sa.insert(channels)
                .values(
                    organization_id=1,
                    kind="webhook",
                    name="aged",
                    config={"format": "loadimpact", "url": "http://127.0.0.1:9/"},
                    events=[],
                    filters={},
                    retry={},
                )
                .returning(channels.c.id)
            )
        ).scalar_one()
    )


async def add_event(conn: AsyncConnection, run_id: int, at: datetime) -> int:
    return int(
        (
            await conn.execute(
                sa.insert(events)
                .values(
                    type="test.finished",
                    occurred_at=at,
                    organization_id=1,
                    project_id=1,
                    run_id=run_id,
                    context={"run": {"id": run_id}},
                )
                .returning(events.c.id)
            )
        ).scalar_one()
    )


def _of_event(column: sa.Column[Any], event_id: int) -> sa.ScalarSelect[Any]:
    return sa.select(column).where(events.c.id == event_id).scalar_subquery()


async def add_delivery(
    conn: AsyncConnection,
    event_id: int,
    channel_id: int,
    *,
    status: str,
    at: datetime,
    attempts: int = 1,
) -> int:
    """A delivery created and last changed at ``at``, with ``attempts`` logged attempts."""
    delivery_id = int(
        (
            await conn.execute(
                sa.insert(deliveries)
                .values(
                    uuid=str(uuid.uuid4()),
                    event_id=event_id,
                    channel_id=channel_id,
                    status=status,
                    attempts=attempts,
                    # A pending one is due far ahead, so that no worker of a test sends it.
                    next_attempt_at=(
                        at.timestamp() if status != DELIVERY_PENDING else 4_000_000_000.0
                    ),
                    created_at=at,
                    updated_at=at,
                    # the delivery log's copies of the event's values, as stage_event writes
                    organization_id=_of_event(events.c.organization_id, event_id),
                    event_type=_of_event(events.c.type, event_id),
                    run_id=_of_event(events.c.run_id, event_id),
                )
                .returning(deliveries.c.id)
            )
        ).scalar_one()
    )
    for number in range(1, attempts + 1):
        await conn.execute(
            sa.insert(delivery_attempts).values(
                delivery_id=delivery_id,
                series=1,
                number=number,
                started_at=at,
                duration_ms=12.5,
                outcome="delivered",
                request_url="http://127.0.0.1:9/",
                request_headers={},
                response_status=200,
                response_body="ok",
            )
        )
    return delivery_id


async def add_report(conn: AsyncConnection, run_id: int, at: datetime) -> int:
    return int(
        (
            await conn.execute(
                sa.insert(run_reports)
                .values(run_id=run_id, at=at, metrics={"vus": 10})
                .returning(run_reports.c.id)
            )
        ).scalar_one()
    )


async def count(engine: AsyncEngine, table: sa.Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def ids(engine: AsyncEngine, table: sa.Table) -> set[int]:
    async with engine.connect() as conn:
        return {int(i) for i in (await conn.execute(sa.select(table.c.id))).scalars()}
