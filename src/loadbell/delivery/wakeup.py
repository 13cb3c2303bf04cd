"""Waking workers as soon as a delivery is staged, so nothing waits on a poll.

In one process the API pokes an ``asyncio.Event``. Across processes on PostgreSQL the
staging transaction sends ``NOTIFY loadbell_outbox`` and each worker LISTENs on a dedicated
connection. Either way the worker also polls slowly, so a lost hint costs latency, never a
delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy.engine import make_url

from loadbell.store.outbox import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Wakeup:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._pg: Any = None

    def poke(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def listen_postgres(self, database_url: str) -> None:
        """LISTEN on a dedicated asyncpg connection (not the pool: a pooled connection could
        be handed to a transaction-mode bouncer that drops LISTEN)."""
        import asyncpg

        url = make_url(database_url).set(drivername="postgresql")
        self._pg = await asyncpg.connect(url.render_as_string(hide_password=False))
        await self._pg.add_listener(NOTIFY_CHANNEL, lambda *_: self._event.set())

    async def close(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(Exception):
                await self._pg.close()
            self._pg = None
