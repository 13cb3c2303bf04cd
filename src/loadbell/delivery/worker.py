"""The delivery worker: claim due deliveries, send them, record what came of each attempt.

A worker is a pipeline of small parts, each in its own module with its own state, composed
here (none of them imports this module):

====================  =====================================================================
``intake.py``         claims from the table, hand-overs from the API of the same process
``slots.py``          per-channel slots: which claimed delivery is attempted next
``lanes.py``          long-lived coroutines that run the attempts
``attempt.py``        one attempt: prepare, pace, render, send, read the outcome
``decision.py``       what the outcome means: succeeded, pending again after N s, failed
``results.py``        results and deferrals written in batches, one transaction each
``liveness.py``       the heartbeat: dead workers' claims are released early
``outage.py``         one log line when the database goes away, one when it is back
``supervise.py``      the side tasks (result writes, heartbeat, pruning) are watched
``pruning.py``        old deliveries, events and reports removed, beside the delivery path
====================  =====================================================================

Invariants (docs/architecture.md, "The worker", says more):

- **Leases are fencing tokens.** A claim writes ``lease_owner`` and ``lease_until``; a result
  or a hand-back is written only where ``lease_until`` is still the claim's. A worker that
  lost a delivery to another (it stalled, or its liveness lapsed) only adds to the log.
- **Order per channel x run x target.** The next delivery of a sequence is claimable only
  once the one before it succeeded or failed for good.
- **Caps.** At most ``worker_concurrency`` attempts at once, at most
  ``per_channel_concurrency`` of one channel, or ``fast_channel_concurrency`` of one whose
  attempts answer fast (``holds.py``).
- **What a crash repeats or delays.** Delivery is at-least-once. A worker killed mid-attempt
  leaves the attempt unlogged and the delivery is sent again with the same id, once its
  liveness lapses (about 3 s) or its lease runs out, whichever comes first; what it had
  claimed but not started goes out as soon. A result not yet written when the process dies
  is lost with it: the delivery is sent again. Nothing else is ever lost.
- **The database may go away.** Claims, result writes and heartbeats are retried with
  backoff; the worker never exits for it, and results wait in memory until written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import datetime
from typing import Any

from loadbell.delivery.attempt import Attempts, setup_or_failure
from loadbell.delivery.decision import Decision
from loadbell.delivery.disabling import Announcer
from loadbell.delivery.holds import Holds
from loadbell.delivery.intake import Intake
from loadbell.delivery.liveness import Liveness
from loadbell.delivery.outage import Backoff, Outage
from loadbell.delivery.pruning import Pruning
from loadbell.delivery.results import Results
from loadbell.delivery.sender import Sender
from loadbell.delivery.setup import ChannelSetup
from loadbell.delivery.slots import Slots
from loadbell.delivery.supervise import SideTasks
from loadbell.delivery.wakeup import Wakeup
from loadbell.domain.retry import RetryPolicy
from loadbell.monitoring.registry import RUNNING, WAITING, Metrics, process_name
from loadbell.security.secretbox import SecretBox
from loadbell.settings import Settings
from loadbell.store.queue import Claimed, Completion, Deferral, QueueUnavailable, WorkQueue

log = logging.getLogger("loadbell.worker")


class Worker:
    def __init__(
        self,
        queue: WorkQueue,
        box: SecretBox,
        settings: Settings,
        wakeup: Wakeup,
        *,
        sender: Sender | None = None,
        name: str | None = None,
        metrics: Metrics | None = None,
        pruning: Pruning | None = None,
        announcer: Announcer | None = None,
    ) -> None:
        self.queue = queue
        # serve passes the app's, so /metrics shows the API's and the worker's figures.
        self.metrics = metrics or Metrics(process_name("worker"))
        self.pruning = pruning
        self.announcer = announcer  # channel.disabled and the owners' mail
        self.settings = settings
        self.wakeup = wakeup
        self.sender = sender or Sender(allow_private_targets=settings.allow_private_targets)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self) % 10_000}"
        self.outage = Outage(self.name, lambda: self.metrics.database_error("worker"))
        # The longest an attempt may take: a lease must outlive it (setup.py caps timeouts).
        longest = settings.lease_seconds * 0.8
        self.slots = Slots(
            Holds(settings.per_channel_concurrency, settings.fast_channel_cap),
            min_lease=longest,
            on_stale=lambda item: self.results.defer(item, 0.0),
        )
        self.results = Results(
            queue,
            self.name,
            self.outage,
            busy=lambda: self.slots.busy,
            written=self._written,
            disabled=self._disabled,
        )
        self.liveness = Liveness(
            queue,
            self.name,
            self.outage,
            forget_after=settings.lease_seconds,
            on_lapse=self._hand_back,
            on_beat=self._resume,
        )
        self.attempts = Attempts(
            self.slots,
            self.sender,
            box,
            public_url=settings.base_url,
            lease_seconds=settings.lease_seconds,
            base_policy=RetryPolicy(),
            record=self._record,
            defer=self.results.defer,
            fresh=self.liveness.fresh,
            lapsed=self._hand_back,
            metrics=self.metrics,
        )
        self.attempts.lanes.limit = settings.worker_concurrency
        self.intake = Intake(
            queue,
            self.slots,
            settings,
            wakeup,
            self.liveness,
            self.outage,
            worker=self.name,
            metrics=self.metrics,
            start=self.attempts.lanes.wake,
            defer=self.results.defer,
            setup=lambda channel, override, project: setup_or_failure(
                self.attempts, channel, override, project
            ),
        )

    # -- the glue between the parts --------------------------------------------------------

    def _record(
        self, item: Claimed, started: datetime, decision: Decision, setup: ChannelSetup | None
    ) -> None:
        if setup is None:
            self.results.add(item, started, decision)
        else:
            self.results.add(item, started, decision, setup.kind.name, setup.auto_disable)
        self.intake.more_due(item.channel_id)

    def _written(self, done: list[Completion], deferred: list[Deferral], followers: bool) -> None:
        self.intake.written(done, deferred, followers)

    def _disabled(self, channel_ids: tuple[int, ...]) -> None:
        """Channels a result write disabled for failing: send nothing more of theirs (the
        write ended their pending deliveries ``skipped``), and announce it."""
        for channel_id in channel_ids:
            self.slots.drop(channel_id)
        if self.announcer is not None:
            self.announcer.disabled(channel_ids)

    def _hand_back(self) -> None:
        """Hand back what was claimed but not started, so that nobody waits for its lease."""
        for item in self.slots.take_queued():
            self.results.defer(item, 0.0)

    def _resume(self) -> None:
        self.attempts.lanes.wake(self.slots.startable())

    def state(self) -> str:
        """RUNNING, or WAITING for the database (the metrics' loadbell_worker_up)."""
        return WAITING if self.outage.down else RUNNING

    # -- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then stop cleanly: hand back what was not started,
        let the attempts under way finish, write every result. Raises SideTaskFailed when a
        side task kept failing (the worker cannot go on without it)."""
        await self.sender.start()
        side = SideTasks()
        relay = asyncio.create_task(self._relay(stop))
        try:
            if not await self._join(stop):
                return
            if self.announcer is not None:
                self.announcer.sweep()
            side.start("result writer", self.results.run)
            side.start("heartbeat", self.liveness.run)
            if self.pruning is not None and self.pruning.enabled:
                side.start("pruning", self.pruning.run)
            claiming = asyncio.create_task(self.intake.run(stop))
            gave_up = side.gave_up()
            either: set[asyncio.Future[Any]] = {claiming, gave_up}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            await claiming
            if gave_up.done():
                raise gave_up.result()
        finally:
            await self._stop(side)
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay

    async def _join(self, stop: asyncio.Event) -> bool:
        """Open the queue and write the first heartbeat, waiting out an outage. False when
        asked to stop first."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                await self.queue.open()
            except QueueUnavailable as exc:
                self.outage.failed(exc)
            else:
                if await self.liveness.beat():
                    return True
            self.wakeup.clear()
            await self.wakeup.wait(backoff.next())
        return False

    async def _relay(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.intake.stopping = True
        self.wakeup.poke()

    async def _stop(self, side: SideTasks) -> None:
        """Stop claiming, hand back what was not started, let the attempts under way
        finish (each within its timeout), write every result, then remove the liveness
        row. Whatever could not finish or be written stays leased to this worker, which then
        marks itself dead so that other workers take it at once."""
        self.intake.stopping = True
        running = self.slots.running
        self._hand_back()
        log.info(
            "worker %s stopping: %d attempts under way finish first",
            self.name,
            running,
            extra={"worker": self.name, "in_flight": running},
        )
        stuck = await self.attempts.lanes.stop(timeout=self.settings.lease_seconds)
        if stuck:
            log.warning(
                "worker %s: %d attempts did not finish in %g s; those deliveries will be "
                "sent again",
                self.name,
                stuck,
                self.settings.lease_seconds,
            )
        left = await self.results.close(timeout=self.settings.lease_seconds)
        if left:
            log.warning(
                "worker %s: %d results could not be written; those deliveries will be sent again",
                self.name,
                left,
            )
        await side.stop()
        if self.announcer is not None:
            await self.announcer.wait()
        if not self.outage.down:
            if stuck or left:
                await self.liveness.lapse()
            else:
                await self.liveness.leave()
        await self.queue.close()
        await self.sender.close()
        log.info("worker %s stopped", self.name, extra={"worker": self.name})
