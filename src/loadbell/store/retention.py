"""Retention: the statements that remove old deliveries, attempts, events and reports.

What "older than the cutoff" means, per table:

- a **delivery** that is not pending and whose last change (``updated_at``: its final
  result, or a redelivery) is older. Its **attempts** go with it, never on their own, so a
  kept delivery keeps its whole log. A pending delivery is never removed, however old;
- an **event** that occurred (``occurred_at``) before the cutoff and has no delivery left:
  the event of a pending delivery stays as long as the delivery does;
- an intermediate **run report** taken (``at``) before the cutoff. Runs, their status
  history, threshold failures and final ``metrics`` are never removed.

Each ``prune_*`` function handles one window of at most ``limit`` rows, taken in id order
after the id ``after``, and stages its deletes on the caller's connection: the caller
commits, one short transaction per window (on SQLite the write lock is held only that
long). Ids grow with time, so a pass walks the windows from the oldest and stops at the
first window with nothing created before the cutoff; no statement scans a whole table.

Several processes may prune at once. On SQLite their transactions take turns. On
PostgreSQL the deliveries to remove are locked with ``FOR UPDATE SKIP LOCKED``, and
every delete repeats its condition, so a row another pruner took, or that a redelivery made
pending again meanwhile, is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.store.tables import (
    DELIVERY_PENDING,
    deliveries,
    delivery_attempts,
    events,
    run_reports,
)


@dataclass
class Pruned:
    """Rows removed (or that would be), per table."""

    deliveries: int = 0
    delivery_attempts: int = 0
    events: int = 0
    run_reports: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def per_table(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> str:
        """``deliveries 12, delivery_attempts 14, events 6, run_reports 0``"""
        return ", ".join(f"{name} {count}" for name, count in self.per_table().items())


class Window(NamedTuple):
    removed: Pruned
    after: int  # the last id the window looked at: where the next one starts
    more: bool  # the next window may hold rows older than the cutoff


def _next(
    ids: list[int], born: list[datetime], cutoff: datetime, limit: int, after: int
) -> tuple[int, bool]:
    """Where the next window starts, and whether there is any point in reading it."""
    if not ids:
        return after, False
    return ids[-1], len(ids) == limit and any(t < cutoff for t in born)


async def prune_deliveries(
    conn: AsyncConnection, cutoff: datetime, after: int, limit: int
) -> Window:
    """Remove the finished deliveries last changed before ``cutoff`` among the ``limit``
    after id ``after``, with their attempts."""
    rows = (
        await conn.execute(
            sa.select(
                deliveries.c.id,
                deliveries.c.status,
                deliveries.c.created_at,
                deliveries.c.updated_at,
            )
            .where(deliveries.c.id > after)
            .order_by(deliveries.c.id)
            .limit(limit)
        )
    ).all()
    after, more = _next([r.id for r in rows], [r.created_at for r in rows], cutoff, limit, after)
    wanted = [r.id for r in rows if r.status != DELIVERY_PENDING and r.updated_at < cutoff]
    if not wanted:
        return Window(Pruned(), after, more)
    lock = (
        sa.select(deliveries.c.id)
        .where(
            deliveries.c.id.in_(wanted),
            deliveries.c.status != DELIVERY_PENDING,
            deliveries.c.updated_at < cutoff,
        )
        .order_by(deliveries.c.id)
    )
    if conn.dialect.name == "postgresql":
        lock = lock.with_for_update(skip_locked=True)
    ids = list((await conn.execute(lock)).scalars())
    if not ids:
        return Window(Pruned(), after, more)
    attempts = await conn.execute(
        sa.delete(delivery_attempts).where(delivery_attempts.c.delivery_id.in_(ids))
    )
    removed = await conn.execute(sa.delete(deliveries).where(deliveries.c.id.in_(ids)))
    return Window(
        Pruned(deliveries=removed.rowcount, delivery_attempts=attempts.rowcount), after, more
    )


def _no_delivery() -> sa.ColumnElement[bool]:
    return ~sa.exists().where(deliveries.c.event_id == events.c.id)


async def prune_events(conn: AsyncConnection, cutoff: datetime, after: int, limit: int) -> Window:
    """Remove the events that occurred before ``cutoff`` and have no delivery left, among
    the ``limit`` after id ``after``."""
    rows = (
        await conn.execute(
            sa.select(events.c.id, events.c.occurred_at)
            .where(events.c.id > after)
            .order_by(events.c.id)
            .limit(limit)
        )
    ).all()
    born = [r.occurred_at for r in rows]
    after, more = _next([r.id for r in rows], born, cutoff, limit, after)
    wanted = [r.id for r in rows if r.occurred_at < cutoff]
    if not wanted:
        return Window(Pruned(), after, more)
    removed = await conn.execute(
        sa.delete(events).where(
            events.c.id.in_(wanted), events.c.occurred_at < cutoff, _no_delivery()
        )
    )
    return Window(Pruned(events=removed.rowcount), after, more)


async def prune_run_reports(
    conn: AsyncConnection, cutoff: datetime, after: int, limit: int
) -> Window:
    """Remove the intermediate reports taken before ``cutoff`` among the ``limit`` after id
    ``after``. The run's final figures are on the run itself and stay."""
    rows = (
        await conn.execute(
            sa.select(run_reports.c.id, run_reports.c.at)
            .where(run_reports.c.id > after)
            .order_by(run_reports.c.id)
            .limit(limit)
        )
    ).all()
    after, more = _next([r.id for r in rows], [r.at for r in rows], cutoff, limit, after)
    wanted = [r.id for r in rows if r.at < cutoff]
    if not wanted:
        return Window(Pruned(), after, more)
    removed = await conn.execute(
        sa.delete(run_reports).where(run_reports.c.id.in_(wanted), run_reports.c.at < cutoff)
    )
    return Window(Pruned(run_reports=removed.rowcount), after, more)


async def count_prunable(conn: AsyncConnection, cutoff: datetime) -> Pruned:
    """What a prune with this cutoff would remove now (whole-table counts: for the dry run
    of ``loadbell prune``, not for the worker)."""
    finished_old = sa.and_(
        deliveries.c.status != DELIVERY_PENDING, deliveries.c.updated_at < cutoff
    )
    kept = sa.exists().where(deliveries.c.event_id == events.c.id).where(sa.not_(finished_old))

    async def count(q: sa.Select[int]) -> int:
        return int((await conn.execute(q)).scalar_one())

    return Pruned(
        deliveries=await count(
            sa.select(sa.func.count()).select_from(deliveries).where(finished_old)
        ),
        delivery_attempts=await count(
            sa.select(sa.func.count())
            .select_from(delivery_attempts.join(deliveries))
            .where(finished_old)
        ),
        events=await count(
            sa.select(sa.func.count())
            .select_from(events)
            .where(events.c.occurred_at < cutoff, ~kept)
        ),
        run_reports=await count(
            sa.select(sa.func.count()).select_from(run_reports).where(run_reports.c.at < cutoff)
        ),
    )
