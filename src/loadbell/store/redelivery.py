"""Redelivery: a new series of attempts on deliveries that already exist.

A redelivered delivery keeps its id and UUID (receivers de-duplicate on it), goes back to
``pending`` with ``series + 1`` and no attempts, and is due now. Results carry their
series, so a late result of the previous series cannot overwrite the new state.
Callers own the transaction and wake the worker after the commit.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store.tables import DELIVERY_FAILED, DELIVERY_PENDING, channels, deliveries


async def restart(conn: AsyncConnection, where: sa.ColumnElement[bool]) -> list[int]:
    """Start a new series on every delivery matching ``where``; returns their ids."""
    ids = [r.id for r in await conn.execute(sa.select(deliveries.c.id).where(where))]
    if ids:
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(ids))
            .values(
                status=DELIVERY_PENDING,
                series=deliveries.c.series + 1,
                attempts=0,
                next_attempt_at=time.time(),
                lease_until=None,
                lease_owner=None,
                reason=None,  # a skipped delivery sent after all
                updated_at=datetime.now(UTC),
            )
        )
    return ids


async def restart_failed_since(
    conn: AsyncConnection,
    organization_id: int,
    since: datetime,
    *,
    channel_id: int | None = None,
) -> list[int]:
    """Every delivery of the organization (optionally of one channel) that failed at or
    after ``since`` (its last change is the failure)."""
    org_channels = sa.select(channels.c.id).where(channels.c.organization_id == organization_id)
    if channel_id is not None:
        org_channels = org_channels.where(channels.c.id == channel_id)
    return await restart(
        conn,
        sa.and_(
            deliveries.c.status == DELIVERY_FAILED,
            deliveries.c.updated_at >= since,
            deliveries.c.channel_id.in_(org_channels),
        ),
    )
