"""A worker's side tasks (result writes, the heartbeat, ...), watched.

A worker must never go on without recording results. Each side task is a coroutine that
runs until cancelled; one that ends with an error is logged and started again after
:data:`RESTART_DELAY`. One that fails :data:`MAX_RESTARTS` times within :data:`WINDOW`
seconds gives up: :meth:`SideTasks.gave_up` then answers, and the worker stops and exits
non-zero rather than run without it. A side task that returns normally is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("loadbell.worker")

RESTART_DELAY = 0.5  # seconds
MAX_RESTARTS = 5
WINDOW = 60.0  # seconds

Factory = Callable[[], Coroutine[Any, Any, None]]


class SideTaskFailed(RuntimeError):
    """A side task kept failing: the worker cannot go on."""


class SideTasks:
    def __init__(self) -> None:
        self._watchers: list[asyncio.Task[None]] = []
        self._gave_up: asyncio.Future[SideTaskFailed] | None = None

    def start(self, name: str, factory: Factory) -> None:
        self._watchers.append(asyncio.create_task(self._watch(name, factory), name=name))

    def gave_up(self) -> asyncio.Future[SideTaskFailed]:
        """Answers with the failure once a side task gave up (never, normally)."""
        if self._gave_up is None:
            self._gave_up = asyncio.get_running_loop().create_future()
        return self._gave_up

    async def _watch(self, name: str, factory: Factory) -> None:
        failures: deque[float] = deque(maxlen=MAX_RESTARTS)
        while True:
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                now = time.monotonic()
                failures.append(now)
                if len(failures) == MAX_RESTARTS and now - failures[0] < WINDOW:
                    log.error(
                        "%s failed %d times within %g s; stopping", name, MAX_RESTARTS, WINDOW
                    )
                    gave_up = self.gave_up()
                    if not gave_up.done():
                        gave_up.set_result(SideTaskFailed(f"{name} kept failing: {exc}"))
                    return
                log.exception("%s failed; restarting it in %g s", name, RESTART_DELAY)
                await asyncio.sleep(RESTART_DELAY)

    async def stop(self) -> None:
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watchers.clear()
