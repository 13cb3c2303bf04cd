"""How many deliveries of a channel a worker holds: running, and claimed but waiting.

A worker claims more of a channel than it can start at once, so one claim (a write
transaction) feeds the channel's next slots as its attempts finish. It holds what the
channel finishes in about HOLD_SECONDS at its recent pace, and claims more once half of
that is left: a fast channel is fed by claims of up to ``claim_batch`` rows, while what a
slow one holds starts well within its lease.
"""

from __future__ import annotations

HOLD_SECONDS = 3.0
# Bounds, in multiples of per_channel_concurrency. DEFAULT_HOLD until the channel's pace is
# known, and in a claim for a channel the worker holds none of.
MIN_HOLD, DEFAULT_HOLD, MAX_HOLD = 2, 4, 24
PACE_WEIGHT = 0.1  # of the newest attempt in the moving average of attempt durations


class Holds:
    def __init__(self, per_channel_concurrency: int) -> None:
        self._cap = per_channel_concurrency
        self.default = DEFAULT_HOLD * per_channel_concurrency
        self._durations: dict[int, float] = {}  # channel id -> moving average, seconds
        # channel id -> its hold, worked out when its duration moves: read per attempt
        self._holds: dict[int, int] = {}

    def of(self, channel_id: int) -> int:
        """How many deliveries of the channel the worker may hold."""
        return self._holds.get(channel_id, self.default)

    def took(self, channel_id: int, seconds: float) -> None:
        """An attempt of the channel took ``seconds``: its pace, and so its hold, moves."""
        before = self._durations.get(channel_id)
        duration = seconds if before is None else before + PACE_WEIGHT * (seconds - before)
        self._durations[channel_id] = duration
        finishes = self._cap / max(duration, 1e-4) * HOLD_SECONDS  # attempts, all slots busy
        self._holds[channel_id] = int(
            min(MAX_HOLD * self._cap, max(MIN_HOLD * self._cap, finishes))
        )
