"""Writing what attempts came to, many results per transaction.

A result waits in memory until it is written: once :data:`FLUSH_BATCH` results wait, or
:data:`FLUSH_WAIT` seconds after the first, or at once when no other attempt is under way
(nothing more could join the batch). Results and deferrals go out in one transaction
(``WorkQueue.record``), which is what lets SQLite keep up with thousands of deliveries per
second. Only the attempt log and the next delivery of the same ordered sequence wait for
the write.

Invariants:

- **Nothing is dropped.** A batch whose write fails stays in memory, ahead of newer ones,
  and is written again once the database answers: its leases hide the rows from other
  workers meanwhile, and a row taken over after its lease ran out only gets the attempt
  logged (the lease is the fencing token). Writing a batch again adds nothing: one attempt
  is one row.
- The flush loop never ends on an error: a failed write is retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from loadbell.delivery.decision import Decision
from loadbell.delivery.outage import Backoff, Outage
from loadbell.domain.health import AutoDisable
from loadbell.store.queue import Claimed, Completion, Deferral, QueueUnavailable, WorkQueue
from loadbell.store.tables import DELIVERY_SUCCEEDED

log = logging.getLogger("loadbell.worker")

FLUSH_BATCH = 256
FLUSH_WAIT = 0.05  # seconds

# (results, deferrals, whether a follower of an ordered sequence is now pending)
Written = Callable[[list[Completion], list[Deferral], bool], None]


class Results:
    def __init__(
        self,
        queue: WorkQueue,
        worker: str,
        outage: Outage,
        *,
        busy: Callable[[], bool],
        written: Written,
        disabled: Callable[[tuple[int, ...]], None] | None = None,
    ) -> None:
        self.queue = queue
        self.worker = worker
        self.outage = outage
        self._busy = busy  # an attempt is under way whose result could join the batch
        self._written = written
        self._disabled = disabled  # channels a write disabled for failing
        self._done: list[Completion] = []
        self._deferred: list[Deferral] = []
        self._needed = asyncio.Event()
        self._full = asyncio.Event()  # FLUSH_BATCH results wait, or the worker stops
        self._closing = False
        self._backoff = Backoff()
        self._flushing = asyncio.Lock()

    @property
    def waiting(self) -> int:
        """Results and deferrals not written yet."""
        return len(self._done) + len(self._deferred)

    def add(
        self,
        item: Claimed,
        started: datetime,
        decision: Decision,
        kind: str | None = None,
        auto_disable: AutoDisable | None = None,
    ) -> None:
        """Queue the result of an attempt; ``kind`` (the channel's) labels its log line,
        ``auto_disable`` is the channel's as the delivery's project sees it."""
        number = item.attempts + 1
        # A line per attempt that did not succeed (a success per line would cost the
        # worker more than a fast receiver does); its fields are the JSON log's.
        if decision.status != DELIVERY_SUCCEEDED:
            log.info(
                "delivery %s attempt %d: %s (%s)",
                item.id,
                number,
                decision.status,
                decision.logged.error,
                extra={
                    "delivery_id": item.id,
                    "delivery_uuid": item.uuid,
                    "channel_id": item.channel_id,
                    "channel_kind": kind,
                    "attempt": number,
                    "outcome": decision.status,
                    "status_code": decision.logged.status_code,
                    "error": decision.logged.error,
                    "retry_in_s": round(decision.delay, 3) if decision.delay else None,
                },
            )
        self._done.append(
            Completion(
                delivery_id=item.id,
                series=item.series,
                attempt_number=number,
                started_at=started,
                outcome=decision.logged,
                status=decision.status,
                next_attempt_at=time.time() + decision.delay,
                lease_until=item.lease_until,
                channel_id=item.channel_id,
                order_key=item.order_key,
                target=item.target,
                auto_disable=auto_disable,
            )
        )
        self._needed.set()
        if len(self._done) >= FLUSH_BATCH or not self._busy():
            self._full.set()

    def defer(self, item: Claimed, wait: float) -> None:
        """Hand a claimed delivery back unsent, due in ``wait`` seconds (no attempt)."""
        self._deferred.append(Deferral(item.id, item.series, item.lease_until, time.time() + wait))
        self._needed.set()

    async def run(self) -> None:
        """The flush loop, until :meth:`close` and everything is written."""
        while True:
            await self._needed.wait()
            self._needed.clear()
            if not self._closing and len(self._done) < FLUSH_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), FLUSH_WAIT)
            self._full.clear()
            if not await self.flush() and not self._closing:
                await asyncio.sleep(self._backoff.next())
                self._needed.set()
                continue
            if self._closing and not self.waiting:
                return

    async def flush(self) -> bool:
        """Write what waits; False (keeping it) when the database could not take it."""
        async with self._flushing:  # the loop and close() never write at once
            return await self._flush()

    async def _flush(self) -> bool:
        batch, self._done = self._done, []
        deferred, self._deferred = self._deferred, []
        if not batch and not deferred:
            return True
        began = time.monotonic()
        try:
            recorded = await self.queue.record(batch, deferred, self.worker)
        except QueueUnavailable as exc:
            self._keep(batch, deferred)
            self.outage.failed(exc)
            return False
        except Exception:
            # A bug must not lose results: keep them, say so, try again.
            self._keep(batch, deferred)
            log.exception("writing %d results failed; retrying", len(batch) + len(deferred))
            return False
        except BaseException:  # cancelled mid-write: the transaction did not commit
            self._keep(batch, deferred)
            raise
        self.outage.ok(began)
        self._backoff.reset()
        self._written(batch, deferred, recorded.followers)
        if recorded.disabled and self._disabled is not None:
            self._disabled(recorded.disabled)
        return True

    def _keep(self, batch: list[Completion], deferred: list[Deferral]) -> None:
        self._done[:0] = batch
        self._deferred[:0] = deferred

    async def close(self, timeout: float) -> int:
        """Write everything that waits, trying for at most ``timeout`` seconds while the
        database is unreachable. Returns how many results and deferrals were left
        unwritten (their deliveries are sent again once their leases run out)."""
        self._closing = True
        deadline = time.monotonic() + timeout
        # flush() first waits for a write under way (the flush loop's): its batch is not
        # counted in ``waiting`` meanwhile. Closing without waiting for it let the loop be
        # cancelled mid-write, and that batch was then never written: its deliveries, already
        # answered by their receivers, stayed leased and went out again later.
        while time.monotonic() < deadline:
            if not await self.flush():
                await asyncio.sleep(min(self._backoff.next(), deadline - time.monotonic()))
            elif not self.waiting:
                break
        self._needed.set()
        return self.waiting
