"""Noise control at fan-out: for one event, whether each channel's delivery goes out now,
waits for the end of quiet hours (``held``), or is recorded ``suppressed`` with a reason.

The rules are pure (``domain/noise.py``); this module reads what they judge against
(``store/noise.py``), once per event: the load test's previous finished runs are read at
most once, whichever channels ask. The clock is ``loadbell.clock`` (tests move it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from loadbell.domain import noise
from loadbell.domain.events import EventType
from loadbell.store import noise as store
from loadbell.store.tables import DELIVERY_HELD, DELIVERY_SUPPRESSED


@dataclass(frozen=True)
class Verdict:
    """Why a channel's deliveries of the event are not sent now, as ``Planned`` takes it."""

    reason: str
    status: str  # suppressed or held
    due: float | None = None  # held: when the window ends (epoch seconds)


@dataclass
class NoiseCheck:
    """The noise rules for one event, asked once per subscribed channel."""

    conn: AsyncConnection
    event_type: EventType
    context: Mapping[str, Any]
    now: float  # epoch seconds
    _previous: list[bool] | None = field(default=None, init=False)

    @property
    def run(self) -> Mapping[str, Any]:
        return self.context.get("run") or {}

    async def verdict(self, channel_id: int, config: Mapping[str, Any]) -> Verdict | None:
        """None: send. Suppressions come before holds: nothing waits that would then be
        dropped."""
        if await self._withheld_by_notify_on(noise.notify_on_of(config)):
            return Verdict(noise.REASON_NOTIFY_ON, DELIVERY_SUPPRESSED)
        if await self._throttled(channel_id, noise.throttle_of(config)):
            return Verdict(noise.REASON_THROTTLE, DELIVERY_SUPPRESSED)
        quiet = noise.quiet_hours_of(config)
        ends = quiet.window_end(datetime.fromtimestamp(self.now, UTC)) if quiet else None
        if quiet is None or ends is None:
            return None
        if quiet.action == noise.DROP:
            return Verdict(noise.REASON_QUIET_HOURS, DELIVERY_SUPPRESSED)
        return Verdict(noise.REASON_QUIET_HOURS, DELIVERY_HELD, ends.timestamp())

    async def _withheld_by_notify_on(self, rule: noise.NotifyOn) -> bool:
        if not rule.judges or not self.run or self.event_type not in noise.PROGRESS | noise.JUDGED:
            return False
        if self.event_type in noise.PROGRESS:
            return True
        load_test = self.context.get("load_test") or {}
        if load_test.get("id") is None or self.run.get("id") is None:
            return False  # nothing to judge against
        if self._previous is None:
            # Once per event, as long as the longest history a rule may ask (an index walk
            # of at most MAX_COUNT rows).
            self._previous = await store.previous_failures(
                self.conn, load_test["id"], self.run["id"], noise.MAX_COUNT
            )
        failed = self.run.get("result") != "passed"
        return not noise.finished_notifies(rule, failed, self._previous)

    async def _throttled(self, channel_id: int, throttle: Mapping[str, float]) -> bool:
        seconds = throttle.get(self.event_type.value)
        if seconds is None or not self.run:
            return False
        event = self.event_type.value
        last = await store.last_sent_at(self.conn, channel_id, self.run["id"], event)
        return last is not None and self.now - last.timestamp() < seconds
