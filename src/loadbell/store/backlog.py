"""The delivery backlog for the metrics: pending deliveries, those due, and how long the
oldest due one has waited. One statement over the partial index of pending deliveries
(``ix_deliveries_due``): its cost grows with the pending rows only, not with the history.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store.tables import deliveries, is_pending

d = deliveries.c


async def read_backlog(conn: AsyncConnection) -> tuple[int, int, float]:
    """(pending, due, seconds the oldest due delivery has been due; 0 when none is).

    Due: pending, its next attempt's time has come, and no live lease holds it. A delivery
    waiting behind an earlier one of its ordered sequence (channel x run x target) counts as
    due: it is waiting all the same.
    """
    now = time.time()
    due = sa.and_(d.next_attempt_at <= now, sa.or_(d.lease_until.is_(None), d.lease_until < now))
    row = (
        await conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(sa.case((due, 1), else_=0)), 0),
                sa.func.min(sa.case((due, d.next_attempt_at))),
            ).where(is_pending(deliveries))
        )
    ).one()
    oldest = row[2]
    return int(row[0]), int(row[1]), max(0.0, now - oldest) if oldest is not None else 0.0


async def count_due(conn: AsyncConnection, cap: int) -> int:
    """Deliveries due and not yet sent, counted up to ``cap`` (so the statement stops early
    however far behind the workers are): pending and their time has come, leased or not.

    One range over the partial index of pending deliveries (``ix_deliveries_due``).
    """
    now = time.time()
    due = (
        sa.select(sa.literal(1))
        .where(is_pending(deliveries), d.next_attempt_at <= now)
        .limit(cap)
        .subquery()
    )
    return int((await conn.execute(sa.select(sa.func.count()).select_from(due))).scalar_one())
