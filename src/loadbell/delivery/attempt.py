"""One attempt: prepare a claimed delivery, pace it, render and send it, read the outcome.

Each lane (``lanes.py``) runs :meth:`Attempts.lane`: it takes the next delivery from the
slots, makes the attempt in its own frame (each time the request resumes, it resumes
through every frame above it, so there are as few as possible) and hands the decision
(``decision.py``) to ``record``. Preparing (the channel as the project sees it, with its
secrets opened) happens once per channel and project in a claim, at send time, so a
corrected URL or header also applies to pending retries.

Invariants:

- An attempt never outlives its timeout by more than :data:`GRACE`: the shared sender keeps
  its own deadline, and a kind's own transport (SMTP, Apprise) is cut off after it.
- A failure to prepare or render is an outcome, never an exception that stops the lane: a
  bug in one kind must not stop the worker.
- A delivery its destination's pace holds back is deferred (``defer``), not attempted: no
  attempt is counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from loadbell.delivery.decision import Decision, decide
from loadbell.delivery.holds import Holds
from loadbell.delivery.lanes import Lanes
from loadbell.delivery.pacing import Pacer
from loadbell.delivery.sender import Sender
from loadbell.delivery.setup import ChannelSetup, channel_setup
from loadbell.delivery.slots import Slots
from loadbell.domain.events import EventType
from loadbell.domain.retry import RetryPolicy
from loadbell.monitoring.registry import Metrics
from loadbell.security.secretbox import SecretBox, SecretKeyError
from loadbell.store.channels import ChannelRow, OverrideRow, channel_from_row, override_from_row
from loadbell.store.queue import ClaimBatch, Claimed
from loadbell.values import ConfigError, Message, Outcome, Verdict

log = logging.getLogger(__name__)

# A kind's own transport gets this long past its timeout before the attempt is cut off.
GRACE = 0.25  # seconds

_EVENT_TYPES = {e.value: e for e in EventType}  # EventType(value) is a slow call

# (the delivery, when its attempt started, the decision, its channel as its project sees
# it, if it could be set up)
Record = Callable[[Claimed, datetime, Decision, ChannelSetup | None], None]
Defer = Callable[[Claimed, float], None]


class Attempts:
    def __init__(
        self,
        slots: Slots,
        sender: Sender,
        box: SecretBox,
        *,
        public_url: str,
        lease_seconds: float,
        base_policy: RetryPolicy,
        record: Record,
        defer: Defer,
        fresh: Callable[[], bool],
        lapsed: Callable[[], None],
        metrics: Metrics,
    ) -> None:
        self.slots = slots
        self.metrics = metrics
        self.sender = sender
        self.box = box
        self.public_url = public_url
        self.lease_seconds = lease_seconds
        self.base_policy = base_policy
        self.pacer = Pacer()
        self._record = record
        self._defer = defer
        self._fresh = fresh  # this worker's claims are still its own (liveness.py)
        self._lapsed = lapsed  # hand back what is queued: another worker may take it
        self.lanes = Lanes(0, self.lane)

    @property
    def holds(self) -> Holds:
        return self.slots.holds

    async def lane(self) -> None:
        """Run attempts until the lanes stop."""
        slots, lanes = self.slots, self.lanes
        while True:
            if not self._fresh():
                self._lapsed()
                job = None
            else:
                job = slots.next(time.time())
            if job is None:
                if not await lanes.park():
                    return
                continue
            item, batch = job
            started = datetime.now(UTC)
            setup = message = None
            raised = False
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
                        outcome = await sending
                        if setup.interpret is not None:
                            outcome = setup.interpret(outcome)
                        outcome = setup.redact(outcome)  # after interpret: it reads the body
                    except Exception as exc:
                        outcome = self._failure(item, exc)
                    raised = self.holds.took(item.channel_id, time.perf_counter() - sent)
            finally:
                slots.done(item.channel_id)
            if raised:  # the channel may run more at once: lanes for what it queued
                lanes.wake(slots.startable())
            decision = decide(item.attempts + 1, outcome, policy)
            kind = setup.kind.name if setup is not None else _kind_of(item, batch)
            self.metrics.attempt(
                kind, item.attempts + 1, decision.status, outcome.duration_ms / 1000
            )
            if decision.hold and setup is not None and message is not None and setup.paced:
                # A Retry-After holds the destination for every delivery queued to it, not
                # only for the one that got it.
                self.pacer.hold(setup.destination(message), decision.hold)
            self._record(item, started, decision, setup)

    def _begin(
        self, item: Claimed, batch: ClaimBatch
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
                sending = _within(setup.transport(message, config, timeout), timeout)
            else:
                sending = self.sender.send(setup.kind.render(message, config), timeout)
            return setup, message, sending
        except Exception as exc:
            return self._failure(item, exc)

    def _failure(self, item: Claimed, exc: Exception) -> Outcome:
        if isinstance(exc, ConfigError):  # e.g. a Slack app channel with no targets
            return Outcome(Verdict.FAILED, error=f"channel configuration: {exc}")
        if isinstance(exc, SecretKeyError):  # fixable by restarting with the right key
            return Outcome(Verdict.RETRY, error=str(exc))
        log.exception("delivery %s: rendering failed", item.id, exc_info=exc)
        return Outcome(Verdict.FAILED, error=f"internal error while rendering: {exc}")

    def _pace(self, setup: ChannelSetup, message: Message) -> float:
        """Seconds the message must wait for its destination's pace or hold (0: go now)."""
        if not setup.paced or (setup.rate is None and not self.pacer.holding):
            return 0.0
        return self.pacer.take(setup.destination(message), setup.rate)

    def _prepare(self, item: Claimed, batch: ClaimBatch) -> tuple[ChannelSetup, Message] | Outcome:
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
            public_url=self.public_url,
            target=item.target,
        )
        return setup, message

    def _channel_setup(self, item: Claimed, batch: ClaimBatch) -> ChannelSetup | Outcome:
        row = batch.channels.get(item.channel_id)
        if row is None or row["deleted_at"] is not None:
            return Outcome(Verdict.FAILED, error="the channel was deleted")
        pid = item.project_id
        ov = batch.overrides.get((item.channel_id, pid)) if pid is not None else None
        return self.setup(
            channel_from_row(row, self.box),
            override_from_row(ov, self.box) if ov is not None else None,
            item.project_id,
        )

    def setup(
        self, channel: ChannelRow, override: OverrideRow | None, project_id: int | None
    ) -> ChannelSetup:
        return channel_setup(
            channel,
            override,
            project_id,
            base_policy=self.base_policy,
            lease_seconds=self.lease_seconds,
        )


def _kind_of(item: Claimed, batch: ClaimBatch) -> str:
    """The kind of a delivery whose channel could not be set up (deleted, disabled, a
    kind that failed): from its claim, if it was claimed."""
    kind = batch.channels.get(item.channel_id, {}).get("kind")
    return kind if isinstance(kind, str) else "unknown"


async def _within(sending: Awaitable[Outcome], timeout: float) -> Outcome:
    """A kind's own transport, cut off :data:`GRACE` seconds after its timeout."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout + GRACE):
            return await sending
    except TimeoutError:
        return Outcome(
            Verdict.RETRY,
            error=f"timed out after {timeout:g} s",
            duration_ms=(time.perf_counter() - started) * 1000,
        )


def setup_or_failure(
    attempts: Attempts, channel: ChannelRow, override: OverrideRow | None, project_id: int | None
) -> ChannelSetup | Outcome:
    """:meth:`Attempts.setup`, or a failed outcome when the kind cannot be set up (a bug in
    one kind must not fail the API call that handed the delivery over)."""
    try:
        return attempts.setup(channel, override, project_id)
    except Exception as exc:
        log.exception("channel %s: preparing failed", channel.id)
        return Outcome(Verdict.FAILED, error=f"internal error: {exc}")
