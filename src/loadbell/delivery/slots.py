"""Which claimed delivery a worker attempts next: per-channel slots over claimed work.

A worker holds claimed deliveries per channel and runs at most the channel's cap of attempts
at once (``holds.py`` says how many of each), so a slow or dead endpoint cannot take every
slot. Channels with queued work and a free slot take turns (round robin).

Invariants:

- ``running(c) <= holds.cap(c)`` for every channel ``c`` when it starts an attempt (a cap
  that falls leaves the attempts under way to finish).
- A delivery is started only while its lease outlives the longest attempt
  (``min_lease`` seconds left): one that waited too long is handed to ``on_stale`` instead,
  so that no other worker can take it over while the attempt is still under way.

No I/O, no clock but the one passed in: the scheduling is tested on its own
(``tests/delivery/test_slots.py``).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator
from typing import Any

from loadbell.delivery.holds import Holds
from loadbell.store.queue import Claimed

Job = tuple[Claimed, Any]  # a claimed delivery and the claim (ClaimBatch) it came with


class Slots:
    def __init__(
        self,
        holds: Holds,
        *,
        min_lease: float,
        on_stale: Callable[[Claimed], None],
    ) -> None:
        self.holds = holds
        self.min_lease = min_lease  # seconds a lease must still run to start an attempt
        self._on_stale = on_stale
        self._running: Counter[int] = Counter()  # channel id -> attempts in flight
        self._queued: dict[int, deque[Job]] = {}  # channel id -> claimed, not started
        self._ready: deque[int] = deque()  # channels with queued work and a free slot
        self._ready_set: set[int] = set()

    # -- what the worker holds -----------------------------------------------------------

    def held(self, channel_id: int) -> int:
        """Deliveries of the channel running or queued here."""
        queued = self._queued.get(channel_id)
        return self._running[channel_id] + (len(queued) if queued else 0)

    def held_total(self) -> int:
        return sum(self._running.values()) + sum(len(q) for q in self._queued.values())

    def half_empty(self, channel_id: int) -> bool:
        """The channel holds half its hold or less: time to claim more of it."""
        return self.held(channel_id) <= self.holds.of(channel_id) // 2

    def room(self) -> dict[int, int]:
        """How many more deliveries of each channel held here a claim may take."""
        return {c: self.holds.of(c) - self.held(c) for c in {*self._running, *self._queued}}

    @property
    def busy(self) -> bool:
        """Some attempt is running or waiting to run."""
        return bool(self._running) or bool(self._queued)

    @property
    def running(self) -> int:
        return sum(self._running.values())

    # -- queueing and starting -----------------------------------------------------------

    def add(self, item: Claimed, batch: Any) -> None:
        self._queued.setdefault(item.channel_id, deque()).append((item, batch))
        self._mark_ready(item.channel_id)

    def startable(self) -> int:
        """How many queued deliveries could start now (lanes to wake)."""
        cap = self.holds.cap
        return sum(
            max(0, min(len(self._queued.get(c, ())), cap(c) - self._running[c]))
            for c in self._ready
        )

    def next(self, now: float) -> Job | None:
        """Take the next delivery to attempt (its slot is then taken), channels in turn."""
        while self._ready:
            channel_id = self._ready.popleft()
            queue = self._queued.get(channel_id)
            cap = self.holds.cap(channel_id)
            if not queue or self._running[channel_id] >= cap:
                self._ready_set.discard(channel_id)
                continue
            job = queue.popleft()
            if not queue:
                del self._queued[channel_id]
            if job[0].lease_until - now < self.min_lease:
                self._on_stale(job[0])
                self._ready.appendleft(channel_id)
                continue
            self._running[channel_id] += 1
            if queue and self._running[channel_id] < cap:
                self._ready.append(channel_id)  # its next turn
            else:
                self._ready_set.discard(channel_id)
            return job
        return None

    def done(self, channel_id: int) -> None:
        """An attempt of the channel ended: its slot is free."""
        self._running[channel_id] -= 1
        if self._running[channel_id] <= 0:
            del self._running[channel_id]
        self._mark_ready(channel_id)

    def take_queued(self) -> Iterator[Claimed]:
        """Remove and yield everything queued (not started): to hand it back."""
        queued, self._queued = self._queued, {}
        self._ready.clear()
        self._ready_set.clear()
        for queue in queued.values():
            for item, _ in queue:
                yield item

    def drop(self, channel_id: int) -> int:
        """Forget what is queued of the channel, unsent (it was disabled: its rows ended
        ``skipped`` and their leases were cleared, so nothing is to be written for them).
        Returns how many."""
        queue = self._queued.pop(channel_id, None)
        if channel_id in self._ready_set:
            self._ready_set.discard(channel_id)
            self._ready.remove(channel_id)
        return len(queue) if queue else 0

    def _mark_ready(self, channel_id: int) -> None:
        if (
            channel_id not in self._ready_set
            and channel_id in self._queued
            and self._running[channel_id] < self.holds.cap(channel_id)
        ):
            self._ready_set.add(channel_id)
            self._ready.append(channel_id)
