"""Redelivery: a new series of attempts on deliveries that already exist.

A redelivered delivery keeps its id and UUID (receivers de-duplicate on it), goes back to
``pending`` with ``series + 1`` and no attempts, and is due now. Results carry their
series, so a late result of the previous series cannot overwrite the new state.
Callers own the transaction and wake the worker after the commit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store.tables import DELIVERY_FAILED, DELIVERY_PENDING, channels, deliveries

# Deliveries restarted per statement. A bulk redelivery may select tens of thousands: one
# statement binding every id failed past asyncpg's 32,767 arguments, and on SQLite (whose
# statements run on the event loop's thread) it held the loop for the whole update.
CHUNK = 1000


async def restart(conn: AsyncConnection, where: sa.ColumnElement[bool]) -> list[int]:
    """Start a new series on every delivery matching ``where``; returns their ids, oldest
    first. In the caller's transaction, CHUNK deliveries per statement (a range of ids
    after the last chunk's), with a turn of the event loop between chunks."""
    due, stamp = time.time(), datetime.now(UTC)
    ids: list[int] = []
    while True:
        after = deliveries.c.id > ids[-1] if ids else sa.true()
        chunk = [
            r.id
            for r in await conn.execute(
                sa.select(deliveries.c.id)
                .where(where, after)
                .order_by(deliveries.c.id)
                .limit(CHUNK)
            )
        ]
        if not chunk:
            return ids
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(chunk))
            .values(
                status=DELIVERY_PENDING,
                series=deliveries.c.series + 1,
                attempts=0,
                next_attempt_at=due,
                lease_until=None,
                lease_owner=None,
                reason=None,  # a skipped delivery sent after all
                updated_at=stamp,
            )
        )
        ids.extend(chunk)
        if len(chunk) < CHUNK:
            return ids
        await asyncio.sleep(0)  # let requests and the worker run between chunks


@dataclass(frozen=True)
class FailedFilter:
    """The failed deliveries of an organization that a bulk redelivery restarts: those of
    its live channels (a deleted channel's deliveries are never sent again), narrowed by
    the delivery log's filters, by the time of the failure (its last change) and by
    ``up_to_id`` (the newest delivery the person saw counted before confirming)."""

    organization_id: int
    since: datetime | None = None
    channel_id: int | None = None
    run_id: int | None = None
    event_type: str | None = None
    up_to_id: int | None = None

    def where(self) -> sa.ColumnElement[bool]:
        live = (
            sa.select(channels.c.id)
            .where(channels.c.organization_id == self.organization_id)
            .where(channels.c.deleted_at.is_(None))
        )
        if self.channel_id is not None:
            live = live.where(channels.c.id == self.channel_id)
        clauses = [
            # The delivery's own copy of its organization first: the (organization, status)
            # index then finds the failures without reading the rest of the log.
            deliveries.c.organization_id == self.organization_id,
            deliveries.c.status == DELIVERY_FAILED,
            deliveries.c.channel_id.in_(live),
        ]
        if self.since is not None:
            clauses.append(deliveries.c.updated_at >= self.since)
        if self.run_id is not None:
            clauses.append(deliveries.c.run_id == self.run_id)
        if self.event_type is not None:
            clauses.append(deliveries.c.event_type == self.event_type)
        if self.up_to_id is not None:
            clauses.append(deliveries.c.id <= self.up_to_id)
        return sa.and_(*clauses)


async def count_failed(
    conn: AsyncConnection, failed: FailedFilter, cap: int | None = None
) -> tuple[int, int | None]:
    """How many deliveries ``restart_failed`` would restart now, and the newest one's id.
    With ``cap``, it counts the newest ``cap + 1`` at most (a count above ``cap`` means
    "more than ``cap``"): a page's count then reads a bounded range of the status index,
    however many failures the organization has."""
    row = (await conn.execute(counted_failed(failed, cap))).one()
    return int(row[0]), row[1]


def counted_failed(failed: FailedFilter, cap: int | None) -> sa.Select[int, Any]:
    """``count_failed``'s statement (the plan test, tests/store/test_delivery_log.py)."""
    if cap is None:
        return sa.select(sa.func.count(), sa.func.max(deliveries.c.id)).where(failed.where())
    newest = (
        sa.select(deliveries.c.id)
        .where(failed.where())
        .order_by(deliveries.c.id.desc())
        .limit(cap + 1)
        .subquery()
    )
    return sa.select(sa.func.count(), sa.func.max(newest.c.id))


async def restart_failed(conn: AsyncConnection, failed: FailedFilter) -> list[int]:
    """Start a new series on every delivery ``failed`` selects; returns their ids."""
    return await restart(conn, failed.where())
