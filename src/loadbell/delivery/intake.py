"""How deliveries reach a worker: claims from the table, and hand-overs from the API.

**Claims.** :meth:`Intake.run` claims due deliveries in batches and queues them in the
slots. It claims more of a channel than can start at once (the channel's hold, ``holds.py``):
one claim (a write transaction) then feeds the channel's next slots as its attempts finish,
instead of one small claim per attempt. A channel is claimed again once half its hold is
left. Between claims the worker sleeps until a wake-up (``wakeup.py``), the earliest retry or
deferral it wrote, or ``poll_seconds``.

**Hand-overs.** ``loadbell serve`` runs the API and a worker in one process: the API's
transaction writes new deliveries already leased to this worker (:meth:`lease_for`) and
gives them over after its commit (:meth:`take`, through ``handoff.py``), with no claim.

Invariants:

- A worker holds at most ``DEFAULT_HOLD x worker_concurrency`` deliveries, and of each channel
  at most its hold.
- It claims, and takes hand-overs, only while its liveness is fresh (``liveness.py``).
- A claim that fails for want of the database is retried with backoff, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from loadbell import clock
from loadbell.delivery.holds import DEFAULT_HOLD
from loadbell.delivery.liveness import Liveness
from loadbell.delivery.outage import Backoff, Outage
from loadbell.delivery.slots import Slots
from loadbell.delivery.wakeup import Wakeup
from loadbell.monitoring.registry import Metrics
from loadbell.settings import Settings
from loadbell.store.channels import ChannelRow, OverrideRow
from loadbell.store.outbox import Lease
from loadbell.store.queue import (
    ClaimBatch,
    Claimed,
    Completion,
    Deferral,
    QueueUnavailable,
    WorkQueue,
)
from loadbell.store.tables import DELIVERY_PENDING

log = logging.getLogger("loadbell.worker")

Staged = tuple[Claimed, ChannelRow, OverrideRow | None]
Setup = Callable[[ChannelRow, OverrideRow | None, int | None], Any]


class Intake:
    def __init__(
        self,
        queue: WorkQueue,
        slots: Slots,
        settings: Settings,
        wakeup: Wakeup,
        liveness: Liveness,
        outage: Outage,
        *,
        worker: str,
        metrics: Metrics,
        start: Callable[[int], None],
        defer: Callable[[Claimed, float], None],
        setup: Setup,
    ) -> None:
        self.queue = queue
        self.slots = slots
        self.settings = settings
        self.wakeup = wakeup
        self.liveness = liveness
        self.outage = outage
        self.worker = worker
        self.metrics = metrics
        self._start = start  # wake lanes for this many startable deliveries
        self._defer = defer
        self._setup = setup
        self.most = DEFAULT_HOLD * settings.worker_concurrency  # deliveries held at most
        self.stopping = False
        self.backlog = False  # the last claim left due work for lack of room
        self._next_due: float | None = None  # earliest retry or deferral this worker wrote
        self._backoff = Backoff()
        self._release_at = 0.0  # time.monotonic() of the next release of held deliveries

    # -- claims --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except QueueUnavailable as exc:
                self.outage.failed(exc)
                await self._pause(stop, self._backoff.next())
            except Exception:
                log.exception("worker %s: claiming failed; retrying", self.worker)
                await self._pause(stop, self._backoff.next())

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        self.wakeup.clear()
        await self.wakeup.wait(seconds)  # stop pokes the wake-up too

    async def step(self) -> None:
        """One claim, then wait for more to be due."""
        await self._release_held()
        slots = self.slots
        room = self.most - slots.held_total()
        if room <= 0 or not self.liveness.fresh():
            self.backlog = True  # finishing attempts poke us
            await self.wakeup.wait(self._idle_timeout())
            return
        # Channels it holds nothing of get the default hold (channel_cap) in this claim.
        channel_room = slots.room()
        saturated = [cid for cid, n in channel_room.items() if n <= 0]
        self.wakeup.clear()  # this claim sees everything poked so far
        began = time.monotonic()
        batch = await self.queue.claim(
            owner=self.worker,
            limit=min(room, self.settings.claim_batch),
            lease_seconds=self.settings.lease_seconds,
            exclude_channels=saturated,
            channel_cap=slots.holds.default,
            channel_room=channel_room,
            dead_owners=self.liveness.dead,
        )
        self.outage.ok(began)
        self._backoff.reset()
        self.metrics.claim(len(batch.deliveries), batch.taken_over)
        # Work may be waiting for room: a saturated channel's, or what this claim left.
        self.backlog = batch.left or bool(saturated)
        self.dispatch(batch)
        if batch.full:
            if any(slots.half_empty(c) for c in {d.channel_id for d in batch.deliveries}):
                return  # more is due now: claim again at once
            # Its channels are now more than half full: claiming again would only fill the
            # few slots left, a whole transaction for a handful of rows. They claim again
            # once half empty (more_due).
            self.backlog = True
        await self.wakeup.wait(self._idle_timeout())

    async def _release_held(self) -> None:
        """At most once per ``poll_seconds``: held deliveries whose quiet hours ended become
        pending, by ``loadbell.clock`` (a small transaction on an index that is empty most
        of the time, kept off the claim itself)."""
        if time.monotonic() < self._release_at:
            return
        self._release_at = time.monotonic() + self.settings.poll_seconds
        await self.queue.release_held(clock.now())

    def _idle_timeout(self) -> float:
        """Seconds to wait for a wake-up: until a retry or deferral this worker scheduled
        falls due, at most ``poll_seconds``. New deliveries wake the worker (wakeup.py);
        the poll covers anything else (another worker's retries, leases that ran out)."""
        poll = self.settings.poll_seconds
        if self._next_due is None:
            return poll
        wait = self._next_due - time.time()
        if wait <= 0:
            self._next_due = None  # due now: the next claim takes it
            return 0.0
        return min(wait, poll)

    def dispatch(self, batch: ClaimBatch) -> None:
        for item in batch.deliveries:
            self.slots.add(item, batch)
        if batch.deliveries:
            self._start(self.slots.startable())

    def more_due(self, channel_id: int) -> None:
        """Work of ``channel_id`` may be waiting: claim now if the channel has room to
        spare, or else as soon as it has (one claim per half-empty hold, not one per
        finished attempt)."""
        if not self.backlog or self.wakeup.poked:
            return  # nothing left behind, or a claim is coming anyway
        if self.slots.half_empty(channel_id):
            self.wakeup.poke()

    def written(self, done: list[Completion], deferred: list[Deferral], followers: bool) -> None:
        """Results were written: retries and deferrals fall due later, and the next delivery
        of an ordered sequence may go now."""
        later = [c.next_attempt_at for c in done if c.status == DELIVERY_PENDING]
        later += [d.due for d in deferred]
        if later:
            self._next_due = min([*later, self._next_due or math.inf])
            self.wakeup.poke()  # a retry or deferral is due at a new time
        if followers:
            self.backlog = True
            for channel_id in {c.channel_id for c in done}:
                self.more_due(channel_id)

    # -- deliveries handed over by the API of this process (handoff.py) ------------------

    def lease_for(self, channel_id: int) -> Lease | None:
        """A lease for a new delivery of ``channel_id`` if this worker has room for it."""
        if self.stopping or not self.liveness.fresh():
            return None
        if self.slots.held(channel_id) >= self.slots.holds.of(channel_id):
            return None
        if self.slots.held_total() >= self.most:
            return None
        return Lease(self.worker, time.time() + self.settings.lease_seconds)

    def take(self, staged: Sequence[Staged]) -> None:
        """Deliveries written with a lease from :meth:`lease_for`, now committed."""
        if self.stopping:  # too late to start them: hand them back to be claimed
            for item, _, _ in staged:
                self._defer(item, 0.0)
            return
        self.metrics.handed_off(len(staged))
        setups: dict[tuple[int, int | None], Any] = {}
        for item, channel, override in staged:
            key = (item.channel_id, item.project_id)
            if key not in setups:
                setups[key] = self._setup(channel, override, item.project_id)
        self.dispatch(ClaimBatch([s[0] for s in staged], {}, {}, setups=setups))
