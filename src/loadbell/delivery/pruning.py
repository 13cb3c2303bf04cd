"""The worker's pruning side task: every ``LOADBELL_PRUNE_INTERVAL_SECONDS``, remove what is
older than ``LOADBELL_RETENTION_DAYS`` (``services/retention.py``).

It runs beside the delivery path and never in its way: on the engine's connections, not
the worker's queue, in windows of ``LOADBELL_PRUNE_BATCH`` rows, one short transaction each,
with pauses between them. The first pass comes after a random part of the interval, so
that workers started together do not prune together (it would be harmless: see
``store/retention.py``). A database error ends the pass, not the task: the next pass
starts from the oldest rows again. One log line per pass that removed something.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.services.retention import cutoff_for, prune
from loadbell.settings import Settings
from loadbell.store.db import DATABASE_ERRORS
from loadbell.store.retention import Pruned

log = logging.getLogger("loadbell.worker")


class Pruning:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.days = settings.retention_days
        self.interval = settings.prune_interval_seconds
        self.batch = settings.prune_batch
        self.passes = 0  # passes finished, for tests and curious readers

    @property
    def enabled(self) -> bool:
        return self.days > 0

    async def run(self) -> None:
        """Prune every interval until cancelled."""
        await asyncio.sleep(random.uniform(0, self.interval))
        while True:
            await self.once()
            await asyncio.sleep(self.interval)

    async def once(self) -> Pruned | None:
        """One pass; None when the database failed it."""
        cutoff = cutoff_for(timedelta(days=self.days))
        try:
            removed = await prune(self.engine, cutoff, batch=self.batch)
        except DATABASE_ERRORS as exc:
            self.passes += 1
            log.warning(
                "prune pass stopped by a database error, next in %g s: %s", self.interval, exc
            )
            return None
        self.passes += 1
        if removed.total:
            log.info("pruned rows older than %d days: %s", self.days, removed.summary())
        return removed
