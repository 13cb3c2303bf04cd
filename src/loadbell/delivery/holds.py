"""How many deliveries of a channel a worker holds, and how many it runs at once.

A worker claims more of a channel than it can start at once, so one claim (a write
transaction) feeds the channel's next slots as its attempts finish. It holds what the
channel finishes in about HOLD_SECONDS at its recent pace, and claims more once half of
that is left: a fast channel is fed by claims of up to ``claim_batch`` rows, while what a
slow one holds starts well within its lease.

A channel runs at most ``per_channel_concurrency`` attempts at once, so that a slow or dead
endpoint cannot hold every slot of the worker until its attempts time out. A channel whose
attempts answer within FAST_SECONDS on average may run up to ``fast_concurrency``: with one
channel's backlog, 16 attempts in flight kept the worker waiting for answers a fifth of the
time (docs/decisions.md, D76). The pace that decides it is the moving average below, so
an endpoint that starts to hang falls back to the cap as soon as its first slow attempt
ends; what it had started by then (at most ``fast_concurrency``) waits for its timeouts.
"""

from __future__ import annotations

HOLD_SECONDS = 3.0
# Bounds, in multiples of per_channel_concurrency. DEFAULT_HOLD until the channel's pace is
# known, and in a claim for a channel the worker holds none of.
MIN_HOLD, DEFAULT_HOLD, MAX_HOLD = 2, 4, 24
PACE_WEIGHT = 0.1  # of the newest attempt in the moving average of attempt durations
# A channel whose attempts take less than this on average may run ``fast_concurrency``.
FAST_SECONDS = 0.25


class Holds:
    def __init__(self, per_channel_concurrency: int, fast_concurrency: int | None = None) -> None:
        self._cap = per_channel_concurrency
        self._fast = max(per_channel_concurrency, fast_concurrency or per_channel_concurrency)
        self.default = DEFAULT_HOLD * per_channel_concurrency
        self._durations: dict[int, float] = {}  # channel id -> moving average, seconds
        # channel id -> its hold, worked out when its duration moves: read per attempt
        self._holds: dict[int, int] = {}
        self._caps: dict[int, int] = {}  # channel id -> its cap, where it is the fast one

    def of(self, channel_id: int) -> int:
        """How many deliveries of the channel the worker may hold."""
        return self._holds.get(channel_id, self.default)

    def cap(self, channel_id: int) -> int:
        """How many attempts of the channel may run at once."""
        return self._caps.get(channel_id, self._cap)

    def took(self, channel_id: int, seconds: float) -> bool:
        """An attempt of the channel took ``seconds``: its pace, and so its hold and its
        cap, move. True when its cap rose (more of its attempts may start now)."""
        before = self._durations.get(channel_id)
        duration = seconds if before is None else before + PACE_WEIGHT * (seconds - before)
        self._durations[channel_id] = duration
        raised = False
        if duration < FAST_SECONDS and self._fast > self._cap:
            raised = channel_id not in self._caps
            self._caps[channel_id] = cap = self._fast
        else:
            self._caps.pop(channel_id, None)
            cap = self._cap
        finishes = cap / max(duration, 1e-4) * HOLD_SECONDS  # attempts, all slots busy
        # At least MIN_HOLD times what may run at once, so a fast channel can fill its slots.
        most = max(MAX_HOLD * self._cap, MIN_HOLD * cap)
        self._holds[channel_id] = int(min(most, max(MIN_HOLD * cap, finishes)))
        return raised
