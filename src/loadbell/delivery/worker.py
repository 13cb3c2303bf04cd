"""The delivery worker: claim due deliveries, render them, send them, record the attempts.

One worker runs many attempts at once (``worker_concurrency``), at most
``per_channel_concurrency`` per channel so a dead endpoint cannot take every slot. A claim
may take more than a channel's free slots (its hold, holds.py): the extra wait in the
worker and start as the channel's attempts finish, so a busy channel is fed by a few large
claims rather than one small claim per attempt. Results are written in batches (one
transaction for many attempts), which is what lets SQLite keep up with thousands of
deliveries per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from loadbell.delivery.holds import DEFAULT_HOLD, Holds
from loadbell.delivery.pacing import Pacer
from loadbell.delivery.retry import RetryPolicy
from loadbell.delivery.sender import Sender
from loadbell.delivery.setup import ChannelSetup, channel_setup
from loadbell.delivery.wakeup import Wakeup
from loadbell.domain.events import EventType
from loadbell.security.secretbox import SecretBox, SecretKeyError
from loadbell.settings import Settings
from loadbell.store import claims
from loadbell.store.channels import ChannelRow, OverrideRow, channel_from_row, override_from_row
from loadbell.store.db import relaxed
from loadbell.store.outbox import Lease
from loadbell.store.tables import DELIVERY_FAILED, DELIVERY_PENDING, DELIVERY_SUCCEEDED
from loadbell.values import ConfigError, Message, Outcome, Verdict

log = logging.getLogger(__name__)


# Results are written in batches: a batch is written once FLUSH_BATCH results wait, or
# FLUSH_WAIT seconds after the first one, or at once when no other attempt is under way
# (nothing more could join it). Each write is a transaction (about 150 µs of CPU for one
# row); only the attempt log and the next delivery of the same run wait for it.
FLUSH_BATCH = 256
FLUSH_WAIT = 0.05  # seconds


_EVENT_TYPES = {e.value: e for e in EventType}  # EventType(value) is a slow call


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        box: SecretBox,
        settings: Settings,
        wakeup: Wakeup,
        *,
        sender: Sender | None = None,
        name: str | None = None,
    ) -> None:
        # Claims and results may be lost in a power cut: the delivery is then sent again.
        self.engine = relaxed(engine)
        self.box = box
        self.settings = settings
        self.wakeup = wakeup
        self.sender = sender or Sender(allow_private_targets=settings.allow_private_targets)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self) % 10_000}"
        self._inflight: Counter[int] = Counter()  # channel id -> attempts in flight
        self.holds = Holds(settings.per_channel_concurrency)
        # channel id -> claimed deliveries waiting for one of the channel's slots
        self._queued: dict[int, deque[tuple[claims.Claimed, claims.ClaimBatch]]] = {}
        self._lanes: set[asyncio.Task[None]] = set()
        self._idle: deque[asyncio.Future[bool]] = deque()  # lanes waiting for work
        self._ready: deque[int] = deque()  # channels with a queued delivery and a free slot
        self._ready_set: set[int] = set()
        self._done: list[claims.Completion] = []
        self._flush_needed = asyncio.Event()
        self._flush_full = asyncio.Event()  # FLUSH_BATCH results wait, or the worker stops
        # (delivery id, series, lease_until, due at)
        self._deferred: list[tuple[int, int, float, float]] = []
        self.pacer = Pacer()
        self._stopping = False
        self._backlog = False  # the last claim left due work for lack of slots
        self._next_due: float | None = None  # earliest retry or deferral this worker wrote
        self.base_policy = RetryPolicy()

    # -- main loop -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.sender.start()
        flusher = asyncio.create_task(self._flush_loop(stop))
        stopper = asyncio.create_task(self._relay_stop(stop))
        try:
            while not stop.is_set():
                await self._step()
        finally:
            stopper.cancel()
            self._stopping = True
            self._release_queued()
            await self._drain()
            stop.set()
            self._flush_needed.set()
            self._flush_full.set()
            await flusher
            await self.sender.close()

    async def _relay_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wakeup.poke()

    async def _step(self) -> None:
        # Hold more than can run: one claim then feeds a channel's next slots as its
        # attempts finish, instead of one small claim (a write transaction) per attempt.
        room = DEFAULT_HOLD * self.settings.worker_concurrency - self._held_total()
        if room <= 0:
            self._backlog = True  # finishing attempts poke us
            await self.wakeup.wait(self._idle_timeout())
            return
        # Channels it holds nothing of get the default hold (channel_cap) in this claim.
        channel_room = {
            cid: self.holds.of(cid) - self._held(cid) for cid in {*self._inflight, *self._queued}
        }
        saturated = [cid for cid, n in channel_room.items() if n <= 0]
        self.wakeup.clear()  # this claim sees everything poked so far
        try:
            batch = await claims.claim(
                self.engine,
                owner=self.name,
                limit=min(room, self.settings.claim_batch),
                lease_seconds=self.settings.lease_seconds,
                exclude_channels=saturated,
                channel_cap=self.holds.default,
                channel_room=channel_room,
            )
        except SQLAlchemyError as exc:
            log.warning("claim failed, retrying in 1 s: %s", exc)
            await asyncio.sleep(1.0)
            return
        # Work may be waiting for room: a saturated channel's, or what this claim left.
        self._backlog = batch.left or bool(saturated)
        self._dispatch(batch)
        if batch.full:
            if any(self._half_empty(c) for c in {d.channel_id for d in batch.deliveries}):
                return  # more is due now: claim again at once
            # Its channels are now more than half full: claiming again would only fill
            # the few slots left, a whole transaction for a handful of rows. They claim
            # again once half empty (_more_due).
            self._backlog = True
        await self.wakeup.wait(self._idle_timeout())

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

    # -- attempts ------------------------------------------------------------------------

    def _half_empty(self, channel_id: int) -> bool:
        return self._held(channel_id) <= self.holds.of(channel_id) // 2

    def _held(self, channel_id: int) -> int:
        queued = self._queued.get(channel_id)
        return self._inflight[channel_id] + (len(queued) if queued else 0)

    def _held_total(self) -> int:
        return sum(self._inflight.values()) + sum(len(q) for q in self._queued.values())

    def _dispatch(self, batch: claims.ClaimBatch) -> None:
        for item in batch.deliveries:
            self._queued.setdefault(item.channel_id, deque()).append((item, batch))
            self._mark_ready(item.channel_id)
        self._wake()

    # Attempts run in up to ``worker_concurrency`` long-lived lanes, each taking the next
    # ready delivery as soon as it finishes one: no task per attempt (creating, scheduling
    # and collecting one cost more than the rest of the worker's bookkeeping), and under
    # load no wake-up either. ``_ready`` lists the channels with a queued delivery and a
    # free slot, in turn.

    def _mark_ready(self, channel_id: int) -> None:
        if (
            channel_id not in self._ready_set
            and channel_id in self._queued
            and self._inflight[channel_id] < self.settings.per_channel_concurrency
        ):
            self._ready_set.add(channel_id)
            self._ready.append(channel_id)

    def _wake(self) -> None:
        """Put idle lanes (or new ones, up to worker_concurrency) on the ready channels."""
        cap = self.settings.per_channel_concurrency
        wanted = sum(
            min(len(self._queued.get(c, ())), cap - self._inflight[c]) for c in self._ready
        )
        while wanted > 0 and self._idle:
            idle = self._idle.popleft()
            if not idle.done():
                idle.set_result(True)
                wanted -= 1
        while wanted > 0 and len(self._lanes) < self.settings.worker_concurrency:
            lane = asyncio.create_task(self._lane())
            self._lanes.add(lane)
            lane.add_done_callback(self._lanes.discard)
            wanted -= 1

    def _next(self) -> tuple[claims.Claimed, claims.ClaimBatch] | None:
        """The next delivery to attempt, taking the ready channels in turn."""
        cap = self.settings.per_channel_concurrency
        # The longest an attempt may take; a queued lease must outlive it (worst case).
        longest = self.settings.lease_seconds * 0.8
        while self._ready:
            channel_id = self._ready.popleft()
            queue = self._queued.get(channel_id)
            if not queue or self._inflight[channel_id] >= cap:
                self._ready_set.discard(channel_id)
                continue
            item, batch = queue.popleft()
            if not queue:
                del self._queued[channel_id]
            if item.lease_until - time.time() < longest:
                # Waited so long that its lease might run out mid-attempt, and another
                # worker could send it too: hand it back to be claimed afresh.
                self._defer(item, 0.0)
                self._ready.appendleft(channel_id)
                continue
            self._inflight[channel_id] += 1
            if queue and self._inflight[channel_id] < cap:
                self._ready.append(channel_id)  # its next turn
            else:
                self._ready_set.discard(channel_id)
            return item, batch
        return None

    async def _lane(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            job = self._next()
            if job is None:
                if self._stopping:
                    return
                idle: asyncio.Future[bool] = loop.create_future()
                self._idle.append(idle)
                if not await idle:
                    return
                continue
            # The attempt runs here rather than in a coroutine of its own: each time the
            # request resumes, it resumes through every frame above it.
            item, batch = job
            started = datetime.now(UTC)
            try:
                begun = self._begin(item, batch)
                if begun is None:  # deferred to its destination's pace: no attempt
                    continue
                if isinstance(begun, Outcome):
                    outcome, policy = begun, self.base_policy
                else:
                    setup, message, sending = begun
                    policy = setup.policy
                    sent = time.perf_counter()
                    try:
                        outcome = self._received(setup, message, await sending)
                    except Exception as exc:
                        outcome = self._failure(item, exc)
                    self.holds.took(item.channel_id, time.perf_counter() - sent)
            finally:
                self._release(item.channel_id)
            self._record(item, started, outcome, policy)
            if self._backlog:
                self._more_due(item.channel_id)

    def _begin(
        self, item: claims.Claimed, batch: claims.ClaimBatch
    ) -> tuple[ChannelSetup, Message, Awaitable[Outcome]] | Outcome | None:
        """What to await for the attempt; or its outcome when it cannot be made; or None
        when its destination's pace defers it."""
        try:
            prepared = self._prepare(item, batch)
            if isinstance(prepared, Outcome):
                return prepared
            setup, message = prepared
            wait = self._pace(setup, message)
            if wait > 0:
                self._defer(item, wait)
                return None
            config, timeout = setup.config, setup.timeout
            if setup.transport is not None:
                return setup, message, setup.transport(message, config, timeout)
            return setup, message, self.sender.send(setup.kind.render(message, config), timeout)
        except Exception as exc:
            return self._failure(item, exc)

    def _received(self, setup: ChannelSetup, message: Message, outcome: Outcome) -> Outcome:
        if setup.interpret is not None:
            outcome = setup.interpret(outcome)
        if outcome.verdict is Verdict.RETRY and outcome.retry_after and setup.paced:
            # A Retry-After holds the destination for every delivery queued to it, not
            # only for the one that got it.
            self.pacer.hold(setup.destination(message), outcome.retry_after)
        return outcome

    def _failure(self, item: claims.Claimed, exc: Exception) -> Outcome:
        if isinstance(exc, ConfigError):  # e.g. a Slack app channel with no targets
            return Outcome(Verdict.FAILED, error=f"channel configuration: {exc}")
        if isinstance(exc, SecretKeyError):  # fixable by restarting with the right key
            return Outcome(Verdict.RETRY, error=str(exc))
        # A bug in one kind must not stop the worker.
        log.exception("delivery %s: rendering failed", item.id, exc_info=exc)
        return Outcome(Verdict.FAILED, error=f"internal error while rendering: {exc}")

    def _release(self, channel_id: int) -> None:
        """An attempt of the channel ended: its slot is free."""
        self._inflight[channel_id] -= 1
        if self._inflight[channel_id] <= 0:
            del self._inflight[channel_id]
        self._mark_ready(channel_id)

    def _more_due(self, channel_id: int) -> None:
        """Work of ``channel_id`` may be waiting: claim now if the channel has slots to
        spare, or else as soon as it has (one claim per half-empty queue, not one per
        finished attempt)."""
        if self.wakeup.poked:
            return  # a claim is coming anyway
        if self._half_empty(channel_id):
            self.wakeup.poke()
        else:
            self._backlog = True

    def _pace(self, setup: ChannelSetup, message: Message) -> float:
        """Seconds the message must wait for its destination's pace or hold (0: go now)."""
        if not setup.paced or (setup.rate is None and not self.pacer.holding):
            return 0.0
        return self.pacer.take(setup.destination(message), setup.rate)

    def _defer(self, item: claims.Claimed, wait: float) -> None:
        """Put a claimed delivery back (paced, or over its channel's cap) without counting
        an attempt."""
        self._deferred.append((item.id, item.series, item.lease_until, time.time() + wait))
        self._flush_needed.set()

    def _prepare(
        self, item: claims.Claimed, batch: claims.ClaimBatch
    ) -> tuple[ChannelSetup, Message] | Outcome:
        key = (item.channel_id, item.project_id)
        setup = batch.setups.get(key)
        if setup is None:  # once per channel and project in a claim, not per delivery
            setup = batch.setups[key] = self._channel_setup(item, batch)
        if isinstance(setup, Outcome):
            return setup
        event_type = _EVENT_TYPES.get(item.event_type) or EventType(item.event_type)
        if not setup.enabled and event_type is not EventType.TEST_NOTIFICATION_CHANNEL:
            return Outcome(Verdict.FAILED, error="the channel is disabled for this project")
        if event_type not in setup.events:
            return Outcome(
                Verdict.FAILED,
                error=f"the channel's format cannot express {event_type.value}",
            )
        message = Message(
            delivery_id=item.uuid,
            event_id=item.event_id,
            event_type=event_type,
            occurred_at=item.occurred_at,
            context=item.context,
            public_url=self.settings.public_url,
            target=item.target,
        )
        return setup, message

    def _channel_setup(
        self, item: claims.Claimed, batch: claims.ClaimBatch
    ) -> ChannelSetup | Outcome:
        row = batch.channels.get(item.channel_id)
        if row is None or row["deleted_at"] is not None:
            return Outcome(Verdict.FAILED, error="the channel was deleted")
        pid = item.project_id
        ov = batch.overrides.get((item.channel_id, pid)) if pid is not None else None
        return self._setup(
            channel_from_row(row, self.box),
            override_from_row(ov, self.box) if ov is not None else None,
            item.project_id,
        )

    def _setup(
        self, channel: ChannelRow, override: OverrideRow | None, project_id: int | None
    ) -> ChannelSetup:
        return channel_setup(
            channel,
            override,
            project_id,
            base_policy=self.base_policy,
            lease_seconds=self.settings.lease_seconds,
        )

    # -- deliveries handed over by the API of this process (delivery/handoff.py) ---------

    def lease_for(self, channel_id: int) -> Lease | None:
        """A lease for a new delivery of ``channel_id`` if this worker has room for it."""
        if self._stopping:
            return None
        if self._held(channel_id) >= self.holds.of(channel_id):
            return None
        if self._held_total() >= DEFAULT_HOLD * self.settings.worker_concurrency:
            return None
        return Lease(self.name, time.time() + self.settings.lease_seconds)

    def take(self, staged: Sequence[tuple[claims.Claimed, ChannelRow, OverrideRow | None]]) -> None:
        """Deliveries written with a lease from :meth:`lease_for`, now committed."""
        if self._stopping:  # too late to start them: hand them back to be claimed
            for item, _, _ in staged:
                self._defer(item, 0.0)
            return
        setups: dict[tuple[int, int | None], ChannelSetup | Outcome] = {}
        for item, channel, override in staged:
            key = (item.channel_id, item.project_id)
            if key not in setups:
                try:
                    setups[key] = self._setup(channel, override, item.project_id)
                except Exception as exc:  # a bug in one kind must not stop the API call
                    log.exception("delivery %s: preparing failed", item.id)
                    setups[key] = Outcome(Verdict.FAILED, error=f"internal error: {exc}")
        self._dispatch(claims.ClaimBatch([s[0] for s in staged], {}, {}, setups=setups))

    def _record(
        self, item: claims.Claimed, started: datetime, outcome: Outcome, policy: RetryPolicy
    ) -> None:
        number = item.attempts + 1
        next_at = time.time()
        if outcome.verdict is Verdict.DELIVERED:
            status = DELIVERY_SUCCEEDED
        elif outcome.verdict is Verdict.RETRY and not policy.exhausted(number):
            status = DELIVERY_PENDING
            next_at += policy.delay(number, outcome.retry_after)
        else:
            status = DELIVERY_FAILED
            if outcome.verdict is Verdict.RETRY:
                # The log shows what happened to the delivery: this was its last attempt.
                outcome = replace(
                    outcome,
                    verdict=Verdict.FAILED,
                    error=f"{outcome.error or 'retryable failure'} (no attempts left: "
                    f"{policy.max_attempts} made)",
                )
        if status != DELIVERY_SUCCEEDED:
            log.info("delivery %s attempt %d: %s (%s)", item.id, number, status, outcome.error)
        self._done.append(
            claims.Completion(
                delivery_id=item.id,
                series=item.series,
                attempt_number=number,
                started_at=started,
                outcome=outcome,
                status=status,
                next_attempt_at=next_at,
                lease_until=item.lease_until,
                channel_id=item.channel_id,
                order_key=item.order_key,
            )
        )
        self._flush_needed.set()
        if len(self._done) >= FLUSH_BATCH or not (self._inflight or self._queued):
            # Full, or no attempt under way whose result could still join this batch.
            self._flush_full.set()

    # -- writing results -----------------------------------------------------------------

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while True:
            await self._flush_needed.wait()
            self._flush_needed.clear()
            if not stop.is_set() and len(self._done) < FLUSH_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_full.wait(), FLUSH_WAIT)
            self._flush_full.clear()
            batch, self._done = self._done, []
            deferred, self._deferred = self._deferred, []
            if batch or deferred:
                try:
                    followers = await claims.complete(self.engine, batch, self.name)
                    await claims.defer(self.engine, deferred)
                except SQLAlchemyError as exc:
                    # Keep them. Their leases hide the rows from other workers meanwhile; a
                    # row taken over after its lease ran out only gets the attempt logged.
                    log.warning("writing %d results failed, retrying: %s", len(batch), exc)
                    self._done[:0] = batch
                    self._deferred[:0] = deferred
                    await asyncio.sleep(0.5)
                    self._flush_needed.set()
                    continue
                later = [c.next_attempt_at for c in batch if c.status == DELIVERY_PENDING]
                later += [due for *_, due in deferred]
                if later:
                    self._next_due = min([*later, self._next_due or math.inf])
                    self.wakeup.poke()  # a retry or deferral is due at a new time
                if followers:
                    # The next delivery of an ordered sequence may go now.
                    for channel_id in {c.channel_id for c in batch}:
                        self._more_due(channel_id)
            if stop.is_set() and not self._lanes and not self._done and not self._deferred:
                return

    def _release_queued(self) -> None:
        """Hand back what was claimed but not started, so it need not wait for its lease."""
        queued, self._queued = self._queued, {}
        for queue in queued.values():
            for item, _ in queue:
                self._defer(item, 0.0)

    async def _drain(self) -> None:
        """Let attempts in flight finish (bounded by their timeouts) before exiting."""
        for idle in self._idle:  # lanes with nothing to do stop now
            if not idle.done():
                idle.set_result(False)
        self._idle.clear()
        if self._lanes:
            with contextlib.suppress(Exception):
                await asyncio.wait(set(self._lanes), timeout=self.settings.lease_seconds)
