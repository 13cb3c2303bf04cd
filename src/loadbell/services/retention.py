"""Pruning by age, for the worker's side task and ``loadbell prune``.

A pass removes, in this order, the finished deliveries (with their attempts), then the
events left without deliveries, then the intermediate run reports older than a cutoff
(``store/retention.py`` says what "older" means per table). It works in windows of
``batch`` rows, one short transaction each, with a pause between them so that the
deliveries' own writes get the database in between. Like the key rotation it commits as it
goes, so it takes the engine: a pass that stops midway (an outage, a signal) has removed
whole windows only and the next pass goes on from the oldest rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loadbell.store.db import reader, transaction
from loadbell.store.retention import (
    Pruned,
    Window,
    count_prunable,
    prune_deliveries,
    prune_events,
    prune_run_reports,
)

PAUSE = 0.05  # seconds between two windows

Step = Callable[[AsyncConnection, datetime, int, int], Awaitable[Window]]

# Deliveries first: their events can only go once they have gone.
STEPS: tuple[Step, ...] = (prune_deliveries, prune_events, prune_run_reports)


def cutoff_for(older_than: timedelta, now: datetime | None = None) -> datetime:
    """The moment before which rows are old."""
    return (now or datetime.now(UTC)) - older_than


async def prune(
    engine: AsyncEngine, cutoff: datetime, *, batch: int, pause: float = PAUSE
) -> Pruned:
    """Remove what is older than ``cutoff``; returns what was removed."""
    total = Pruned()
    for step in STEPS:
        after, more = 0, True
        while more:
            async with transaction(engine) as conn:
                removed, after, more = await step(conn, cutoff, after, batch)
            total += removed
            if more:
                await asyncio.sleep(pause)
    return total


async def preview(engine: AsyncEngine, cutoff: datetime) -> Pruned:
    """What :func:`prune` would remove now, changing nothing."""
    async with reader(engine).connect() as conn:
        return await count_prunable(conn, cutoff)
