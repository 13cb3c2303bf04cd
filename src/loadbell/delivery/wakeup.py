"""Waking workers as soon as a delivery is staged, so nothing waits on a poll.

In one process the API pokes an ``asyncio.Event``. ``serve``'s worker process gets the
poke from ``serve`` through a pipe (``delivery/child.py``: :meth:`Wakeup.relay_to`).
Across processes on PostgreSQL the staging transaction sends ``NOTIFY loadbell_outbox``
and each worker LISTENs on a dedicated connection. Either way the worker also polls
slowly, so a lost hint costs latency, never a delivery. A dropped LISTEN connection
(database restart, idle kill) is re-opened with backoff, and the worker is poked once it
is back, for the hints missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from loadbell.store.outbox import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

SQLITE_WATCH_SECONDS = 0.01  # how often a separate worker checks SQLite for new commits

_RELISTEN_MAX_DELAY = 1.0  # seconds between attempts to re-open a dropped LISTEN connection


class Wakeup:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._pg: Any = None
        self._dsn: str | None = None
        self._relisten: asyncio.Task[None] | None = None
        self._closing = False
        self._sqlite_task: asyncio.Task[None] | None = None
        self._relays: list[Callable[[], None]] = []

    def poke(self) -> None:
        self._event.set()
        for relay in self._relays:
            relay()

    def relay_to(self, poke: Callable[[], None]) -> None:
        """Pass each poke on to ``poke`` too: a worker in another process that this one
        can reach directly (``serve``'s worker process)."""
        self._relays.append(poke)

    @property
    def poked(self) -> bool:
        """A poke is waiting for the worker's next claim."""
        return self._event.is_set()

    def clear(self) -> None:
        """Forget pokes so far: the claim about to run answers them."""
        self._event.clear()

    async def wait(self, timeout: float) -> None:
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()

    async def listen_postgres(self, database_url: str) -> None:
        """LISTEN on a dedicated asyncpg connection (not the pool: a pooled connection could
        be handed to a transaction-mode bouncer that drops LISTEN)."""
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        await self._listen()

    async def _listen(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._event.set())
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._lost)
        self._pg = conn

    def _lost(self, _conn: Any) -> None:
        if self._closing:
            return
        log.warning("the LISTEN connection to PostgreSQL dropped; re-opening it")
        self._pg = None
        self._relisten = asyncio.get_running_loop().create_task(self._reopen())

    async def _reopen(self) -> None:
        delay = 0.1  # seconds, doubled per failure up to _RELISTEN_MAX_DELAY
        while not self._closing:
            try:
                await self._listen()
            except Exception as exc:  # the database may still be restarting: one line only
                log.debug("LISTEN failed, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RELISTEN_MAX_DELAY)
            else:
                log.info("the LISTEN connection to PostgreSQL is open again")
                self._event.set()  # NOTIFYs sent while we were away are lost
                return

    async def watch_sqlite(self, path: str, interval: float = SQLITE_WATCH_SECONDS) -> None:
        """Wake on commits by other processes to the same SQLite file.

        SQLite has no LISTEN. ``PRAGMA data_version`` changes whenever another connection
        commits; reading it costs microseconds and takes no lock, so a short loop over it
        gives a separate ``loadbell worker`` millisecond wake-ups without a busy poll of the
        deliveries table.
        """
        conn = sqlite3.connect(path, check_same_thread=False)
        self._sqlite_task = asyncio.get_running_loop().create_task(
            self._watch(conn, interval), name="loadbell-sqlite-watch"
        )

    async def _watch(self, conn: sqlite3.Connection, interval: float) -> None:
        try:
            last = conn.execute("PRAGMA data_version").fetchone()[0]
            while not self._closing:
                await asyncio.sleep(interval)
                try:
                    now = conn.execute("PRAGMA data_version").fetchone()[0]
                except sqlite3.Error as exc:  # the poll still covers us
                    log.warning("sqlite wake-up watch failed: %s", exc)
                    continue
                if now != last:
                    last = now
                    self._event.set()
        finally:
            conn.close()

    async def close(self) -> None:
        self._closing = True
        if self._sqlite_task is not None:
            self._sqlite_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sqlite_task
            self._sqlite_task = None
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relisten
            self._relisten = None
        if self._pg is not None:
            with contextlib.suppress(Exception):
                await self._pg.close()
            self._pg = None
