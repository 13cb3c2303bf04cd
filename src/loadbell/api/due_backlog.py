"""How far behind the workers are: the third signal of admission (api/admission.py).

The other two signals watch this process's own pace. They let the API go on taking run
updates while the deliveries they create are not being sent: when other processes took the
CPU, ``serve`` kept accepting 200 PATCHes/s while its worker sent about 10/s, for minutes
(15,605 deliveries piled up), until the pools ran dry and clients waited 30 s. Every
accepted update is a promise to deliver, so the API stops making new promises while too
many are overdue, and the CPU it saves goes to the worker.

:class:`DueBacklog` counts the deliveries due and not yet sent (pending, their time has
come, leased or not), up to just past the bound, every :data:`INTERVAL`, on a connection
of the app's pool. It counts them in the database, so it is the same with the worker in
this process, with ``serve --no-worker`` and separate workers, and on PostgreSQL with
several workers. A receiver that fails does not count for long: its deliveries wait for
their retry time, so they are not due meanwhile. A receiver that is only slow does: its
deliveries are due and waiting, and an API that went on taking them would only make the
wait longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.store.backlog import count_due
from loadbell.store.db import reader

log = logging.getLogger(__name__)

INTERVAL = 0.25  # seconds between two counts: a bound of 2,000 fills in 10 s at 200/s


class DueBacklog:
    def __init__(self, bound: int, interval: float = INTERVAL) -> None:
        self.bound = bound
        self.count = 0  # deliveries due at the last count (at most bound + 1)
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def over(self) -> bool:
        """More deliveries are due than the bound: refuse what would add to them."""
        return self.count > self.bound

    def start(self, engine: AsyncEngine) -> None:
        """Count every ``interval`` on ``engine``'s pool (the app's, made at its start-up)."""
        self._task = asyncio.create_task(self._watch(reader(engine)), name="loadbell-due-backlog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self, engine: AsyncEngine) -> None:
        while True:
            try:
                await self.refresh(engine)
            except Exception as exc:  # the database is away: requests find out themselves
                log.debug("counting the due deliveries failed: %s", exc)
                self.count = 0
            await asyncio.sleep(self._interval)

    async def refresh(self, engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            self.count = await count_due(conn, self.bound + 1)
            await conn.rollback()
        return self.count
