"""The reads noise control's rules need when an event is staged (``services/noise.py``).

Both are bounded: the previous runs by ``ix_runs_ended`` (a load test's finished runs in
end order, read newest first, at most ``limit`` rows), the throttle by ``ix_deliveries_run_id``
(one run's deliveries, a handful per channel).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain.statuses import RunResult
from loadbell.store.tables import (
    DELIVERY_SKIPPED,
    DELIVERY_SUPPRESSED,
    deliveries,
    events,
    runs,
)


async def previous_failures(
    conn: AsyncConnection, load_test_id: int, run_id: int, limit: int
) -> list[bool]:
    """The load test's finished runs before ``run_id``, newest first (by end, then id), at
    most ``limit``: True for each whose result was not ``passed``."""
    rows = await conn.execute(
        sa.select(runs.c.result)
        .where(
            runs.c.load_test_id == load_test_id,
            runs.c.ended_at.is_not(None),
            runs.c.id != run_id,
        )
        .order_by(runs.c.ended_at.desc(), runs.c.id.desc())
        .limit(limit)
    )
    return [r.result != RunResult.PASSED.value for r in rows]


async def last_sent_at(
    conn: AsyncConnection, channel_id: int, run_id: int, event_type: str
) -> datetime | None:
    """When the newest event of ``event_type`` of the run that the channel was to send
    (pending, held, sent or failed: not suppressed or skipped) occurred."""
    found = await conn.execute(
        sa.select(sa.func.max(events.c.occurred_at))
        .select_from(deliveries.join(events, events.c.id == deliveries.c.event_id))
        .where(
            deliveries.c.run_id == run_id,
            deliveries.c.channel_id == channel_id,
            deliveries.c.event_type == event_type,
            deliveries.c.status.not_in([DELIVERY_SUPPRESSED, DELIVERY_SKIPPED]),
        )
    )
    value = found.scalar_one_or_none()
    if isinstance(value, str):  # should max() lose the column's type on SQLite
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value if isinstance(value, datetime) else None
