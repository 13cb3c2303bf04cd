"""Long-lived coroutines ("lanes") that run a worker's attempts.

Up to ``limit`` lanes each run ``body``, which takes the next ready delivery as soon as it
finishes one: no task per attempt (creating, scheduling and collecting one cost more than
the rest of the worker's bookkeeping), and under load no wake-up either. A lane with nothing
to do parks (:meth:`Lanes.park`) until :meth:`Lanes.wake` says work is ready.

A lane outlives the call that woke it (an API request handing deliveries over, in
``serve``), so it starts in an empty context: the request's id must not label the log
lines of every attempt the lane makes afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any


class Lanes:
    def __init__(self, limit: int, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.limit = limit
        self._body = body
        self._tasks: set[asyncio.Task[None]] = set()
        self._parked: deque[asyncio.Future[bool]] = deque()
        self._stopping = False

    def __len__(self) -> int:
        return len(self._tasks)

    def wake(self, wanted: int) -> None:
        """Put ``wanted`` lanes to work: parked ones first, then new ones up to the limit."""
        if self._stopping:
            return
        while wanted > 0 and self._parked:
            parked = self._parked.popleft()
            if not parked.done():
                parked.set_result(True)
                wanted -= 1
        while wanted > 0 and len(self._tasks) < self.limit:
            task = asyncio.get_running_loop().create_task(
                self._body(), context=contextvars.Context()
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            wanted -= 1

    async def park(self) -> bool:
        """Wait until woken. False: the lanes are stopping, the caller's lane ends."""
        if self._stopping:
            return False
        parked: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._parked.append(parked)
        return await parked

    async def stop(self, timeout: float) -> int:
        """Parked lanes end now; running ones once their attempt is done (at most
        ``timeout`` seconds: attempts are bounded by their own timeouts). Returns how many
        lanes were still running then: they are cancelled, their attempts left unrecorded."""
        self._stopping = True
        while self._parked:
            parked = self._parked.popleft()
            if not parked.done():
                parked.set_result(False)
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(set(self._tasks), timeout=timeout)
        stuck = set(self._tasks)
        for task in stuck:
            task.cancel()
        if stuck:
            await asyncio.wait(stuck)
        return len(stuck)
