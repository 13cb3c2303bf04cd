"""A worker's heartbeat: how others learn that it died, and it learns that it may be
presumed dead.

Every :data:`HEARTBEAT` seconds the worker writes ``alive_until = now + LAPSE`` in its row of
``workers``. A claim may take a delivery leased to a worker whose row has lapsed, without
waiting for the lease (``store/queue``): so after a SIGKILL, what the dead worker had claimed
but not started goes out within about LAPSE + HEARTBEAT seconds, not after the whole lease.

The other side of that promise: a worker whose own heartbeat has not been written for LAPSE
seconds (the database was unreachable, the process stalled) may have lost its claims to
another worker. From :data:`MARGIN` seconds before that moment it starts nothing more, and
hands back what it holds (the write is fenced, so a delivery another worker took over keeps
its new owner). Attempts already under way finish; their results are fenced too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from loadbell.delivery.outage import Backoff, Outage
from loadbell.store.queue import QueueUnavailable, WorkQueue

log = logging.getLogger("loadbell.worker")

HEARTBEAT = 1.0  # seconds between heartbeats
LAPSE = 3.0  # seconds without a heartbeat after which a worker is presumed dead
MARGIN = 0.5  # seconds before its own lapse when a worker stops starting attempts


class Liveness:
    def __init__(
        self,
        queue: WorkQueue,
        worker: str,
        outage: Outage,
        *,
        forget_after: float,
        on_lapse: Callable[[], None],
        on_beat: Callable[[], None],
    ) -> None:
        self.queue = queue
        self.worker = worker
        self.outage = outage
        self.forget_after = forget_after  # seconds: by then every lease of a dead worker ran out
        self._on_lapse = on_lapse  # hand back what is held: it may be taken over
        self._on_beat = on_beat  # claims are safe again: resume
        self.alive_until = 0.0  # as last written (epoch seconds)
        self.dead: frozenset[str] = frozenset()  # lapsed workers that may still hold leases
        self._backoff = Backoff()

    def fresh(self) -> bool:
        """This worker's claims are still its own: it may start attempts and claim."""
        return time.time() < self.alive_until - MARGIN

    async def beat(self) -> bool:
        """Write one heartbeat; False when the database could not take it."""
        now, began = time.time(), time.monotonic()
        try:
            dead = await self.queue.heartbeat(
                self.worker, now + LAPSE, forget_before=now - self.forget_after
            )
        except QueueUnavailable as exc:
            self.outage.failed(exc)
            return False
        self.outage.ok(began)
        self.alive_until = now + LAPSE
        self.dead = frozenset(dead) - {self.worker}
        return True

    async def run(self) -> None:
        """Beat until cancelled. While beats fail, hand back what is held once this
        worker could be presumed dead."""
        while True:
            if await self.beat():
                self._backoff.reset()
                self._on_beat()
                await asyncio.sleep(HEARTBEAT)
                continue
            if not self.fresh():
                self._on_lapse()
            await asyncio.sleep(min(self._backoff.next(), HEARTBEAT))

    async def lapse(self) -> None:
        """Mark this worker dead now (best effort): it stops with deliveries still leased
        to it, which other workers may then take at once instead of after their leases."""
        now = time.time()
        try:
            await self.queue.heartbeat(
                self.worker, now - LAPSE, forget_before=now - self.forget_after
            )
        except QueueUnavailable as exc:
            log.warning("worker %s: could not mark itself stopped: %s", self.worker, exc)

    async def leave(self) -> None:
        """Remove this worker's row when it stops cleanly (best effort: a row left behind
        lapses like a dead worker's)."""
        try:
            await self.queue.leave(self.worker)
        except QueueUnavailable as exc:
            log.warning("worker %s: could not remove its liveness row: %s", self.worker, exc)
