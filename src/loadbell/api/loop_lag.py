"""How far behind the event loop runs: the second signal of admission (api/admission.py).

A process serves every request on one event loop, so the time a request waits for its
turn is how late the loop runs its callbacks. :class:`LoopLag` measures it with a timer:
every :data:`INTERVAL` it sleeps and notes how much later than asked it woke up. The
figure jumps up at once and decays with a half-life of :data:`HALF_LIFE`, so one quiet
tick does not hide a busy loop, and a busy spell is forgotten within a fraction of a
second once it ends.

The lag counts whatever kept the loop from running: its own work, and other processes
the operating system ran instead (on a shared 2-core machine that is a good part of it).
Either way, a request admitted now would wait that long at each turn it needs.
"""

from __future__ import annotations

import asyncio
import contextlib

INTERVAL = 0.02  # seconds between two looks (50 wake-ups a second: well under 1 % of a core)
HALF_LIFE = 0.1  # seconds for the figure to halve once the loop is on time again


class LoopLag:
    def __init__(self) -> None:
        self.seconds = 0.0  # how late the loop runs now (smoothed), in seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="loadbell-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(INTERVAL)
            took = loop.time() - asked
            self.note(took - INTERVAL, took)

    def note(self, late: float, elapsed: float) -> None:
        """One look: the loop woke ``late`` seconds late, ``elapsed`` after the last one."""
        decayed = self.seconds * 0.5 ** (elapsed / HALF_LIFE)
        self.seconds = max(late, decayed, 0.0)
